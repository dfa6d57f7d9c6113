"""The store worker: ``codes`` and ``dead-letter`` -> [store] -> the results store
(``icdcoder worker store``).

It reads both output streams in consumer group ``store`` and, per entry, writes the result
(or the failure) to the store, commits, then acks. The write is idempotent (one result per
note version and pack), so a redelivery after a crash between commit and ack stores nothing
twice. An entry whose write fails (the database is down) stays pending and is retried by the
reclaiming subscriber, for as long as it takes: a result is never dropped.

So that Redis does not keep patient text, stored entries are deleted from both streams once
they are ``ICDCODER_STORE__TRIM_AFTER_S`` old (a grace period for other readers of the codes
stream such as ``icdcoder submit --wait``): every claim interval, entries the group has
delivered and acknowledged are removed (``XDEL``); entries not yet stored never are.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager, suppress
from typing import TYPE_CHECKING, Any, cast

from faststream import AckPolicy
from faststream.asgi import AsgiFastStream
from faststream.redis import RedisBroker, StreamSub
from faststream.redis.annotations import RedisStreamMessage
from faststream.specification import AsyncAPI
from pydantic import BaseModel
from redis.asyncio import Redis
from redis.exceptions import ResponseError
from structlog.contextvars import bound_contextvars

from icdcoder.shared.bus.admin import connect
from icdcoder.shared.bus.letters import unreadable_middleware, unreadable_reason
from icdcoder.shared.bus.metrics import WorkerMetrics
from icdcoder.shared.bus.routes import asyncapi_route, worker_routes
from icdcoder.shared.bus.wire import entry_bytes, payload_of, unpack_payload
from icdcoder.shared.errors import loggable
from icdcoder.shared.logging import get_logger
from icdcoder.shared.messages import CodedNote, DeadLetter
from icdcoder.shared.notes import content_hash
from icdcoder.shared.settings import Settings
from icdcoder.shared.store.repository import Store
from icdcoder.shared.streams import CODES, DEAD_LETTER

if TYPE_CHECKING:
    pass

log = get_logger("icdcoder.store")

GROUP = "store"
STAGE = "store"
GRACEFUL_TIMEOUT_S = 30.0


def letter_text(letter: DeadLetter) -> str | None:
    """The note text inside a dead letter's payload, when it can be read (for its version)."""
    if letter.payload_encoding != "utf-8":
        return None
    try:
        data = json.loads(unpack_payload(letter.payload.encode()))
    except Exception:
        return None
    text = data.get("text") if isinstance(data, dict) else None
    return text if isinstance(text, str) else None


class StoreWorker:
    """Writes what the pipeline produced into the store (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        open_store: Callable[[], Store],
        *,
        reclaim: bool = True,
    ) -> None:
        self.settings = settings
        self.config = settings.bus
        self._open_store = open_store
        self.store: Store | None = None
        self.metrics = WorkerMetrics.create()
        self._loaded = asyncio.Event()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        faststream_log = logging.getLogger("icdcoder.faststream")
        faststream_log.setLevel(logging.WARNING)
        self.broker = RedisBroker(
            self.config.redis_url.get_secret_value(),
            graceful_timeout=GRACEFUL_TIMEOUT_S,
            middlewares=[
                self.metrics.broker_middleware("icdcoder-store"),
                unreadable_middleware(self.keep_unreadable),
            ],
            logger=faststream_log,
            log_level=logging.DEBUG,
        )
        self.subscribers: list[Any] = []
        for stream, handler in ((CODES, self._on_result), (DEAD_LETTER, self._on_letter)):
            self._subscribe(stream, handler, idle_ms=None)
            if reclaim:
                self._subscribe(stream, handler, idle_ms=self.config.claim_idle_ms)
        self.app = AsgiFastStream(
            self.broker,
            asgi_routes=worker_routes(self.broker, self._loaded.is_set, self.metrics),
            logger=faststream_log,
            lifespan=self._lifespan,
            after_startup=[self._start_tasks],
            on_shutdown=[self._stop_tasks],
            asyncapi_path=asyncapi_route(),
            specification=AsyncAPI(
                title="icdcoder store", description=f"{CODES}, {DEAD_LETTER} -> [store] -> SQL"
            ),
        )

    def _subscribe(
        self, stream: str, handler: Callable[..., Awaitable[None]], idle_ms: int | None
    ) -> None:
        sub = StreamSub(
            stream,
            group=GROUP,
            consumer=self.config.consumer_name,
            max_records=1,
            min_idle_time=idle_ms,
            polling_interval=int(self.config.claim_interval_s * 1000) if idle_ms else None,
        )
        suffix = ":reclaim" if idle_ms else ""
        subscriber = self.broker.subscriber(
            stream=sub, ack_policy=AckPolicy.MANUAL, title=f"{stream}:store{suffix}"
        )
        subscriber(handler)
        self.subscribers.append(subscriber)

    @asynccontextmanager
    async def _lifespan(self) -> AsyncIterator[None]:
        self._redis = connect(self.config)
        try:
            for stream in (CODES, DEAD_LETTER):
                with suppress(ResponseError):  # BUSYGROUP: it exists
                    await self._redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
            yield
        finally:
            await self._stop_tasks()
            await self._redis.aclose()

    async def _start_tasks(self) -> None:
        self._stop = asyncio.Event()
        self._tasks = [asyncio.create_task(self._load()), asyncio.create_task(self._trim_loop())]

    async def _stop_tasks(self) -> None:
        self._stop.set()
        tasks, self._tasks = self._tasks, []
        if tasks:
            await asyncio.wait(tasks, timeout=5.0)

    async def _load(self) -> None:
        with bound_contextvars(stage=STAGE):
            self.store = await asyncio.to_thread(self._open_store)
            self._loaded.set()
            log.info("store_opened", keep_text=self.store.keep_text)

    # -- per entry

    async def _on_result(self, body: CodedNote, message: RedisStreamMessage) -> None:
        await self._write(message, body.note_id, "result", lambda s: s.save_result(body))

    async def _on_letter(self, body: DeadLetter, message: RedisStreamMessage) -> None:
        def save(store: Store) -> bool:
            text = letter_text(body)
            store.save_failure(
                stage=body.stage,
                reason=body.error,
                note_id=body.note_id,
                text=text,
                digest=content_hash(text) if text is not None else None,
                attempts=body.attempts,
                payload=body.payload if body.payload_encoding == "utf-8" else None,
            )
            return True

        await self._write(message, body.note_id, "failure", save)

    async def _write(
        self,
        message: RedisStreamMessage,
        note_id: str | None,
        kind: str,
        write: Callable[[Store], bool],
    ) -> None:
        started = time.perf_counter()
        await self._loaded.wait()
        store = self.store
        assert store is not None
        with bound_contextvars(stage=STAGE, note_id=note_id, kind=kind):
            try:
                stored = await asyncio.to_thread(write, store)
            except Exception as exc:  # the database is down: stays pending, retried later
                self.metrics.messages.labels(STAGE, "retry").inc()
                log.error("message", outcome="retry", error=loggable(exc))
                return
            await message.ack()
            outcome = "stored" if stored else "duplicate"
            self.metrics.messages.labels(STAGE, outcome).inc()
            self.metrics.seconds.labels(STAGE).observe(time.perf_counter() - started)
            log.info("message", outcome=outcome, ms=round((time.perf_counter() - started) * 1e3, 2))

    async def keep_unreadable(self, raw: Mapping[str, Any], exc: BaseException) -> None:
        """An entry that is not a CodedNote or DeadLetter: kept as a failure, then acked."""
        channel = _id(raw.get("channel") or "")
        model: type[BaseModel] = CodedNote if channel == CODES else DeadLetter
        payload = payload_of(entry_bytes(raw.get("data") or {}))
        reason = f"unreadable {channel} entry: {unreadable_reason(model, payload, exc)}"
        ids = raw.get("message_ids") or []
        await self._loaded.wait()
        store = self.store
        assert store is not None
        try:
            await asyncio.to_thread(
                lambda: store.save_failure(
                    stage=STAGE,
                    reason=reason,
                    payload=payload.text if payload.is_text else None,
                )
            )
            if ids:
                await self._redis.xack(channel, GROUP, *ids)
        except Exception as failure:
            log.error("message", outcome="retry", error=loggable(failure))
            return
        self.metrics.messages.labels(STAGE, "unreadable").inc()
        log.warning("message", outcome="unreadable", error=reason)

    # -- trimming what is stored

    async def _trim_loop(self) -> None:
        while not self._stop.is_set():
            with suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.config.claim_interval_s)
            if self._stop.is_set():
                return
            try:
                await self.trim(self._redis, self.settings.store.trim_after_s)
            except Exception as exc:
                log.error("trim_failed", error=loggable(exc))

    async def trim(self, redis: Redis, older_than_s: float) -> int:
        """Delete entries of both streams that the group stored more than ``older_than_s``
        ago (delivered to the group, not pending); returns how many."""
        removed = 0
        cutoff = int((time.time() - older_than_s) * 1000)
        for stream in (CODES, DEAD_LETTER):
            delivered = await _last_delivered(redis, stream)
            if delivered is None:
                continue
            pending = {
                _id(cast("bytes", p["message_id"]))
                for p in await redis.xpending_range(stream, GROUP, "-", "+", 10_000)
            }
            end = min(_split(delivered), (cutoff, 2**63 - 1))
            entries = cast(
                "list[tuple[bytes, dict[bytes, bytes]]]",
                await redis.xrange(stream, "-", f"{end[0]}-{end[1]}", count=1000),
            )
            stale = [_id(entry_id) for entry_id, _ in entries if _id(entry_id) not in pending]
            if stale:
                removed += int(await redis.xdel(stream, *stale))
        if removed:
            log.info("trimmed", entries=removed)
        return removed


async def _last_delivered(redis: Redis, stream: str) -> str | None:
    try:
        groups = await redis.xinfo_groups(stream)
    except ResponseError:
        return None
    for group in groups:
        if _id(group["name"]) == GROUP:
            return _id(group["last-delivered-id"])
    return None


def _id(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _split(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)
