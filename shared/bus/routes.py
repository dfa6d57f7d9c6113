"""The HTTP routes every worker serves beside its subscribers: health, metrics, AsyncAPI.

/healthz/live    204 while the process and its event loop answer (also while loading)
/healthz/ready   204 when the core is loaded and Redis answers a PING, else 503
/metrics         Prometheus text
/asyncapi        the AsyncAPI page, its viewer served from the package (offline)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from faststream.asgi import AsgiResponse, AsyncAPIRoute, get
from faststream.asgi.types import Scope  # at run time: FastStream reads handler annotations
from faststream.redis import RedisBroker

from icdcoder.shared.bus import docs
from icdcoder.shared.bus.metrics import WorkerMetrics


@get(include_in_schema=False)
async def live(scope: Scope) -> AsgiResponse:
    """Liveness: the process and its event loop answer."""
    return AsgiResponse(b"", 204)


def ready_route(broker: RedisBroker, loaded: Callable[[], bool]) -> Any:
    @get(include_in_schema=False)
    async def ready(scope: Scope) -> AsgiResponse:
        """Readiness: the core is loaded and Redis answers."""
        ok = loaded() and await broker.ping(timeout=2.0)
        return AsgiResponse(b"", 204 if ok else 503)

    return ready


def worker_routes(
    broker: RedisBroker, loaded: Callable[[], bool], metrics: WorkerMetrics
) -> list[tuple[str, Any]]:
    return [
        ("/healthz/live", live),
        ("/healthz/ready", ready_route(broker, loaded)),
        ("/metrics", metrics.asgi_app()),
        *docs.asset_routes(),
    ]


def asyncapi_route() -> AsyncAPIRoute:
    return AsyncAPIRoute(
        "/asyncapi",
        try_it_out_path=None,
        asyncapi_js_url=docs.ASYNCAPI_JS,
        asyncapi_css_url=docs.ASYNCAPI_CSS,
    )
