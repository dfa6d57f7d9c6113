"""The four pipeline stages. Each has a pure ``core`` and a FastStream ``app``."""
