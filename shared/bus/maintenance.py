"""A worker's periodic upkeep: lost streams and groups, stopped subscribers, stale consumers.

Every ``claim_interval_s``:

* streams and groups that vanished (a Redis restarted without persistence, a failover that
  lost them) are recreated, and the loss is logged loudly: the notes in flight then were lost
  and must be submitted again. FastStream stops a subscriber whose group disappeared; it is
  started again here, so the worker goes on instead of exiting;
* consumers of the group that hold nothing and have been idle for
  :data:`STALE_CONSUMER_CLAIM_PERIODS` claim periods (replicas that are gone) are removed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from structlog.contextvars import bound_contextvars

from icdcoder.shared.bus.admin import ensure_groups
from icdcoder.shared.bus.metrics import WorkerMetrics
from icdcoder.shared.errors import loggable
from icdcoder.shared.logging import get_logger
from icdcoder.shared.settings import BusConfig
from icdcoder.shared.streams import Stage

log = get_logger("icdcoder.bus")

STALE_CONSUMER_CLAIM_PERIODS = 10


@dataclass
class Maintenance:
    stage: Stage
    config: BusConfig
    #: (name, FastStream subscriber) pairs to restart when they stopped.
    subscribers: Sequence[tuple[str, Any]]
    metrics: WorkerMetrics

    async def run(self, redis: Redis, stop: asyncio.Event) -> None:
        """Every claim interval until ``stop`` is set. (A stop event, not only cancellation:
        redis-py can swallow a cancellation that lands inside a command.)"""
        with bound_contextvars(stage=self.stage.name):
            while not stop.is_set():
                with suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.config.claim_interval_s)
                if stop.is_set():
                    return
                try:
                    await self.repair(redis)
                    await self.prune_consumers(redis)
                except Exception as exc:
                    log.error("maintenance_failed", error=loggable(exc))

    async def repair(self, redis: Redis) -> list[str]:
        """Recreate lost streams and groups, restart subscribers that stopped because of it."""
        created = await ensure_groups(redis)
        if created:
            self.metrics.groups_recreated.labels(self.stage.name).inc(len(created))
            log.error(
                "bus_streams_lost",
                recreated=created,
                hint="Redis restarted without persistence or the streams were deleted: "
                "notes in flight were lost and must be submitted again",
            )
        for name, subscriber in self.subscribers:
            if not subscriber.running:
                await subscriber.start()
                log.warning("subscriber_restarted", subscriber=name)
        return created

    async def prune_consumers(self, redis: Redis) -> list[str]:
        """Remove consumers of this group that hold nothing and have long stopped reading."""
        limit_ms = STALE_CONSUMER_CLAIM_PERIODS * self.config.claim_idle_ms
        removed: list[str] = []
        for consumer in await redis.xinfo_consumers(self.stage.source, self.stage.group):
            raw = consumer["name"]
            name = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
            if (
                name != self.config.consumer_name
                and int(consumer["pending"]) == 0
                and int(consumer["idle"]) > limit_ms
            ):
                await redis.xgroup_delconsumer(self.stage.source, self.stage.group, name)
                removed.append(name)
        if removed:
            log.info("consumers_pruned", consumers=removed)
        return removed
