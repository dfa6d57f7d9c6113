"""The AsyncAPI page offline: FastStream's page, its viewer served by the worker itself.

FastStream's ``/asyncapi`` page loads the AsyncAPI React viewer from a CDN; a worker in a
hospital network often has no internet. The viewer's two files ship in ``static/asyncapi``
(see its README) and each worker serves them under :data:`ASSETS`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from faststream.asgi import AsgiResponse, get
from faststream.asgi.types import Scope  # at run time: FastStream reads handler annotations

STATIC = Path(__file__).with_name("static") / "asyncapi"
ASSETS = "/asyncapi/assets"
_FILES = {
    "asyncapi-standalone.js": "text/javascript; charset=utf-8",
    "asyncapi.min.css": "text/css; charset=utf-8",
}


#: The URLs to give FastStream's ``AsyncAPIRoute`` instead of its CDN ones.
ASYNCAPI_JS = f"{ASSETS}/asyncapi-standalone.js"
ASYNCAPI_CSS = f"{ASSETS}/asyncapi.min.css"


def asset_routes() -> list[tuple[str, Any]]:
    """``(path, ASGI app)`` for each viewer file (read once, on first request)."""
    return [(f"{ASSETS}/{name}", _file_route(name, kind)) for name, kind in _FILES.items()]


def _file_route(name: str, content_type: str) -> Any:
    cache: list[bytes] = []

    @get(include_in_schema=False)
    async def serve(scope: Scope) -> AsgiResponse:
        if not cache:
            cache.append((STATIC / name).read_bytes())
        headers = {"content-type": content_type, "cache-control": "public, max-age=86400"}
        return AsgiResponse(cache[0], 200, headers)

    return serve
