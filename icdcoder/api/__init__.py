"""The HTTP API: ``icdcoder serve`` (FastAPI on uvicorn). See :mod:`icdcoder.api.app`."""
