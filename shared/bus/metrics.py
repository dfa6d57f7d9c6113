"""Prometheus metrics of a stage worker, served at ``/metrics``.

FastStream's ``RedisPrometheusMiddleware`` counts what the broker sees (messages received,
their size, processing time, exceptions); these add what only the worker knows, by stage:
outcomes (committed, duplicate, dead_letter, retry), dead letters by kind, reclaimed entries
and groups recreated after Redis lost them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from faststream.redis.prometheus import RedisPrometheusMiddleware
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.asgi import make_asgi_app

SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


@dataclass(frozen=True)
class WorkerMetrics:
    registry: CollectorRegistry
    messages: Counter
    seconds: Histogram
    dead_letters: Counter
    reclaims: Counter
    groups_recreated: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> WorkerMetrics:
        registry = registry or CollectorRegistry()
        return cls(
            registry=registry,
            messages=Counter(
                "icdcoder_messages",
                "Messages handled, by stage and outcome",
                ["stage", "outcome"],
                registry=registry,
            ),
            seconds=Histogram(
                "icdcoder_message_seconds",
                "Seconds from delivery to commit, by stage",
                ["stage"],
                buckets=SECONDS_BUCKETS,
                registry=registry,
            ),
            dead_letters=Counter(
                "icdcoder_dead_letters",
                "Messages dead-lettered, by stage and kind",
                ["stage", "kind"],
                registry=registry,
            ),
            reclaims=Counter(
                "icdcoder_reclaims",
                "Entries reclaimed from consumers that died or stalled, by stage",
                ["stage"],
                registry=registry,
            ),
            groups_recreated=Counter(
                "icdcoder_groups_recreated",
                "Consumer groups recreated after Redis lost them, by stage",
                ["stage"],
                registry=registry,
            ),
        )

    def broker_middleware(self, app_name: str) -> RedisPrometheusMiddleware:
        """FastStream's own broker metrics, in the same registry."""
        return RedisPrometheusMiddleware(registry=self.registry, app_name=app_name)

    def asgi_app(self) -> Callable[..., Any]:
        """``/metrics`` in Prometheus's text format."""
        app: Callable[..., Any] = make_asgi_app(self.registry)
        return app
