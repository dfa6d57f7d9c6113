"""Running a stage worker: its ASGI app under uvicorn, until SIGTERM or SIGINT.

uvicorn serves the health, metrics and AsyncAPI routes and runs the app's lifespan, which
starts the broker and loads the core. On a signal uvicorn runs the lifespan's shutdown: the
subscribers stop reading and the message in hand is finished and committed (up to
:data:`~icdcoder.shared.bus.worker.GRACEFUL_TIMEOUT_S`), else cancelled at the core's next
checkpoint and left pending for another replica. HTTP requests are bounded: 16 KiB of request
line and headers, a few connections at a time, short keep-alive.
"""

from __future__ import annotations

from typing import Any, Protocol

import uvicorn

from icdcoder.shared.bus.worker import GRACEFUL_TIMEOUT_S
from icdcoder.shared.settings import HttpConfig

#: Request line plus headers, bytes (h11 refuses more with 431/400).
MAX_HEAD_BYTES = 16 * 1024
#: Concurrent HTTP connections before uvicorn answers 503: probes, scrapes and a docs reader.
MAX_CONNECTIONS = 32


def server_config(app: Any, http: HttpConfig) -> uvicorn.Config:
    """uvicorn's settings for a worker's small HTTP surface."""
    return uvicorn.Config(
        app,
        host=http.host,
        port=http.port,
        lifespan="on",
        log_config=None,  # our structlog setup formats uvicorn's records too
        access_log=False,  # probes every few seconds are not news
        server_header=False,
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
        limit_concurrency=MAX_CONNECTIONS,
        timeout_keep_alive=5,
        timeout_graceful_shutdown=int(GRACEFUL_TIMEOUT_S) + 5,
    )


class Worker(Protocol):
    """Anything with an ASGI ``app`` whose lifespan runs it (a stage, the store worker)."""

    @property
    def app(self) -> Any: ...


async def serve_worker(worker: Worker, http: HttpConfig) -> None:
    """Serve ``worker`` until a signal; raises ``RuntimeError`` if the app failed to start."""
    server = uvicorn.Server(server_config(worker.app, http))
    await server.serve()  # on SIGTERM/SIGINT uvicorn re-raises the signal once stopped
    if not server.started:
        raise RuntimeError("the worker did not start (see the log above)")
