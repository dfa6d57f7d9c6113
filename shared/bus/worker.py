"""One stage as a FastStream app: subscribers, the per-message handler, dead letters.

A :class:`StageWorker` is built from a :class:`StageSpec` (which core, which models, what to
count) and the settings. Its FastStream broker has two subscribers on the stage's stream and
group: one reads new entries one at a time (``XREADGROUP COUNT 1``, so replicas share the
backlog), the other is FastStream's own ``XAUTOCLAIM`` reader (``min_idle_time``), which takes
over entries a dead or stalled consumer left pending. FastStream's claimed messages carry no
delivery count, so the reclaim handler asks ``XPENDING`` for it and dead-letters an entry past
``max_deliveries``: that keeps the guarantee that a message failing every time ends in the
dead-letter stream instead of circling for ever.

Per message (:meth:`StageWorker.handle`): the core runs, then the result and the ack go in one
Lua script (:mod:`~icdcoder.shared.bus.outbox`). Outcomes:

* the core rejects the note (``ValueError``: empty, too long, inconsistent): dead letter now;
* the message cannot be parsed: dead letter now (:mod:`~icdcoder.shared.bus.letters`), with a reason
  that names fields and types, never values; bytes that are not UTF-8 are kept as base64;
* the result is over ``max_message_bytes``: dead letter now;
* any other error (a model server down, a message made with another pack): the error is kept,
  the entry stays pending, and a reclaim retries it later;
* building or sending a dead letter fails: logged without payload, the entry stays pending and
  the next reclaim tries again with a generic reason.

The canonical log line per message carries ids, outcome, attempt, milliseconds and counts:
never text.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, Generic, cast

from faststream import AckPolicy
from faststream.asgi import AsgiFastStream
from faststream.redis import RedisBroker, StreamSub
from faststream.redis.annotations import RedisStreamMessage
from faststream.specification import AsyncAPI
from pydantic import BaseModel
from redis.asyncio import Redis
from structlog.contextvars import bound_contextvars

from icdcoder.shared.bus.admin import connect, ensure_groups
from icdcoder.shared.bus.letters import (
    DeadLetters,
    previous_deliveries,
    stream_id,
    unreadable_middleware,
)
from icdcoder.shared.bus.maintenance import Maintenance
from icdcoder.shared.bus.metrics import WorkerMetrics
from icdcoder.shared.bus.outbox import Outbox, RedisOutbox
from icdcoder.shared.bus.routes import asyncapi_route, worker_routes
from icdcoder.shared.bus.stage import InT, LoadedStage, OutT, StageSpec, check_pack
from icdcoder.shared.bus.wire import PAYLOAD_FIELD, inflate, pack_payload
from icdcoder.shared.cancel import Cancelled
from icdcoder.shared.errors import describe_error, loggable
from icdcoder.shared.logging import get_logger
from icdcoder.shared.messages import DeadLetter
from icdcoder.shared.settings import Settings
from icdcoder.shared.streams import CODES, DEAD_LETTER

log = get_logger("icdcoder.bus")

#: How long a stopping worker waits for the message in hand (Kubernetes: keep the pod's
#: terminationGracePeriodSeconds above it plus the core's longest batch).
GRACEFUL_TIMEOUT_S = 30.0
#: How long stopping waits for the core load and maintenance tasks.
STOP_TASKS_S = 5.0


class StageWorker(Generic[InT, OutT]):
    """One stage's worker: broker, subscribers, maintenance, health routes and lifespan.

    ``app`` is the ASGI app :func:`icdcoder.shared.bus.serve.serve_worker` runs. Tests call
    :meth:`bind` with a fake core and outbox instead of running the lifespan.
    """

    def __init__(
        self, spec: StageSpec[InT, OutT], settings: Settings, *, reclaim: bool = True
    ) -> None:
        """``reclaim=False`` leaves out the reclaiming subscriber: FastStream's in-memory
        ``TestRedisBroker`` hands every message to every subscriber of its stream."""
        self.spec = spec
        self.stage = spec.stage
        self.settings = settings
        self.config = settings.bus
        self.metrics = WorkerMetrics.create()
        self._runtime: LoadedStage[InT, OutT] | None = None
        self._outbox: Outbox | None = None
        self._loaded = asyncio.Event()
        self._lock = asyncio.Lock()  # one note at a time: cores need not be thread-safe
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()
        self._redis: Redis | None = None
        self.letters = DeadLetters(self.stage, spec.input_model, lambda: self.outbox, self.metrics)

        faststream_log = logging.getLogger("icdcoder.faststream")
        faststream_log.setLevel(logging.WARNING)  # the canonical line per message is ours
        self.broker = RedisBroker(
            self.config.redis_url.get_secret_value(),
            graceful_timeout=GRACEFUL_TIMEOUT_S,
            middlewares=[
                self.metrics.broker_middleware(f"icdcoder-{self.stage.name}"),
                unreadable_middleware(self.letters.reject_unreadable),
            ],
            logger=faststream_log,
            log_level=logging.DEBUG,
        )
        consumer = self.config.consumer_name
        self.reader = self.broker.subscriber(
            stream=StreamSub(
                self.stage.source, group=self.stage.group, consumer=consumer, max_records=1
            ),
            ack_policy=AckPolicy.MANUAL,  # acked by the commit script, after publishing
            parser=inflate,
            title=f"{self.stage.source}:{self.stage.name}",
            description=f"The {self.stage.name} reads {spec.input_model.__name__} messages.",
        )
        self.reader(self._make_handler(reclaimed=False))
        subscribers: list[tuple[str, Any]] = [("reader", self.reader)]
        if reclaim:
            subscribers.append(("reclaimer", self._reclaimer(consumer)))
        self.broker.publisher(
            self.stage.sink,
            schema=spec.output_model,
            title=f"{self.stage.sink}:{self.stage.name}",
            description=f"One {spec.output_model.__name__} per note (JSON in `{PAYLOAD_FIELD}`).",
        )
        self.broker.publisher(
            DEAD_LETTER,
            schema=DeadLetter,
            title=f"{DEAD_LETTER}:{self.stage.name}",
            description="Messages this stage gave up on, with the reason.",
        )
        self.maintenance = Maintenance(
            self.stage,
            self.config,
            subscribers,
            self.metrics,
        )
        self.app = AsgiFastStream(
            self.broker,
            asgi_routes=worker_routes(self.broker, lambda: self.loaded, self.metrics),
            logger=faststream_log,
            lifespan=self._lifespan,
            after_startup=[self._start_tasks],
            on_shutdown=[self._on_shutdown],
            asyncapi_path=asyncapi_route(),
            specification=AsyncAPI(
                title=f"icdcoder {self.stage.name}",
                description=f"{self.stage.source} -> [{self.stage.name}] -> {self.stage.sink}",
            ),
        )

    def _reclaimer(self, consumer: str) -> Any:
        """FastStream's XAUTOCLAIM reader for entries idle past ``claim_idle_ms``."""
        subscriber = self.broker.subscriber(
            stream=StreamSub(
                self.stage.source,
                group=self.stage.group,
                consumer=consumer,
                min_idle_time=self.config.claim_idle_ms,
                polling_interval=int(self.config.claim_interval_s * 1000),
            ),
            ack_policy=AckPolicy.MANUAL,
            parser=inflate,
            title=f"{self.stage.source}:{self.stage.name}:reclaim",
            description=f"Entries idle over {self.config.claim_idle_ms} ms, taken over.",
        )
        subscriber(self._make_handler(reclaimed=True))
        return subscriber

    # -- wiring

    def bind(self, runtime: LoadedStage[InT, OutT], outbox: Outbox) -> None:
        """Give the worker its core and outbox (the lifespan does it; tests pass fakes)."""
        self._runtime = runtime
        self._outbox = outbox
        self._lock = asyncio.Lock()  # fresh, for the event loop that runs the worker now
        self._loaded.set()

    def _make_handler(self, *, reclaimed: bool) -> Callable[..., Awaitable[None]]:
        async def handler(body: BaseModel, message: RedisStreamMessage) -> None:
            await self.handle(cast(InT, body), message, reclaimed=reclaimed)

        # FastStream reads the payload model from the signature: give it the concrete one.
        handler.__annotations__ = {
            "body": self.spec.input_model,
            "message": RedisStreamMessage,
            "return": None,
        }
        name = self.stage.name.capitalize() + ("Reclaim" if reclaimed else "")
        handler.__name__ = handler.__qualname__ = name
        return handler

    @asynccontextmanager
    async def _lifespan(self) -> AsyncIterator[None]:
        redis = connect(self.config)
        self._redis = redis
        self._loaded = asyncio.Event()
        self._outbox = RedisOutbox(redis)  # dead letters work while the core still loads
        try:
            with bound_contextvars(stage=self.stage.name):
                await ensure_groups(redis)
            yield
        finally:
            await self._stop_tasks()
            self._redis = None
            await redis.aclose()
            log.info("worker_stopped", stage=self.stage.name)

    async def _start_tasks(self) -> None:
        """After the broker started: load the core, then keep the groups and consumers."""
        log.info("worker_started", stage=self.stage.name, consumer=self.config.consumer_name)
        if self._redis is not None:
            self._stop = asyncio.Event()
            self._tasks = [
                asyncio.create_task(self._load(self._redis)),
                asyncio.create_task(self.maintenance.run(self._redis, self._stop)),
            ]

    async def _on_shutdown(self) -> None:
        log.info("worker_stopping", stage=self.stage.name)
        await self._stop_tasks()

    async def _stop_tasks(self) -> None:
        """Before the broker stops (so nothing restarts a subscriber that is stopping)."""
        self._stop.set()
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            if not task.done():
                task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=STOP_TASKS_S)

    async def _load(self, redis: Redis) -> None:
        """Build the core in a thread while the HTTP routes already answer (liveness)."""
        with bound_contextvars(stage=self.stage.name):
            started = time.perf_counter()
            try:
                runtime = await asyncio.to_thread(self.spec.load, self.settings)
            except Exception as exc:
                log.critical("core_load_failed", error=loggable(exc))
                raise
            log.info("core_loaded", ms=_ms(started), consumer=self.config.consumer_name)
            self.bind(runtime, self._outbox or RedisOutbox(redis))

    @property
    def loaded(self) -> bool:
        return self._loaded.is_set()

    # -- per message

    @property
    def runtime(self) -> LoadedStage[InT, OutT]:
        if self._runtime is None:
            raise RuntimeError(f"{self.stage.name} worker has no core yet (not started)")
        return self._runtime

    @property
    def outbox(self) -> Outbox:
        if self._outbox is None:
            raise RuntimeError(f"{self.stage.name} worker has no outbox yet (not started)")
        return self._outbox

    async def handle(
        self, note: InT, message: RedisStreamMessage, *, reclaimed: bool = False
    ) -> None:
        """Process one parsed message and commit the outcome; never raises (but cancels)."""
        message_id = stream_id(message.raw_message)
        note_id = cast(str | None, getattr(note, "note_id", None))
        started = time.perf_counter()
        await self._loaded.wait()
        with bound_contextvars(stage=self.stage.name, note_id=note_id, message_id=message_id):
            try:
                attempt = previous_deliveries(message.raw_message) + 1
                if reclaimed:
                    self.metrics.reclaims.labels(self.stage.name).inc()
                    attempt = await message.get_delivery_count()  # XPENDING
                if attempt > self.config.max_deliveries:
                    outcome, counts = await self.letters.give_up(message.raw_message, attempt - 1)
                else:
                    outcome, counts = await self._process(note, message, message_id, attempt)
            except Exception as exc:  # Redis down while committing: the entry stays pending
                self._count("retry", started)
                log.error("message", outcome="retry", error=loggable(exc), ms=_ms(started))
                return
            self._count(outcome, started)
            log.info("message", outcome=outcome, attempt=attempt, ms=_ms(started), **counts)

    def _count(self, outcome: str, started: float) -> None:
        self.metrics.messages.labels(self.stage.name, outcome).inc()
        self.metrics.seconds.labels(self.stage.name).observe(time.perf_counter() - started)

    async def _process(
        self, note: InT, message: RedisStreamMessage, message_id: str, attempt: int
    ) -> tuple[str, Mapping[str, Any]]:
        runtime = self.runtime
        try:
            self._check_pack(note)
            async with self._lock:
                result = await runtime.process(note)
        except ValueError as exc:  # the core rejects this note: a retry cannot help
            letter = self.letters.letter_for(
                message.raw_message, describe_error(exc), attempt, note_id_of(note)
            )
            return await self.letters.send(letter, "rejected", loggable(exc))
        except Cancelled:
            raise asyncio.CancelledError from None  # shutting down: leave the entry pending
        except Exception as exc:
            await self.outbox.note_failure(self.stage, message_id, describe_error(exc))
            return "retry", {"error": loggable(exc)}
        payload = result.model_dump_json()
        # results stay plain JSON for their consumers; between stages long ones are compressed
        stored = payload if self.stage.sink == CODES else pack_payload(payload)
        size = len(stored if isinstance(stored, bytes) else stored.encode())
        if size > self.config.max_message_bytes:
            limit = self.config.max_message_bytes
            reason = f"result of {size:,} bytes is over the limit of {limit:,}"
            letter = self.letters.letter_for(message.raw_message, reason, attempt, note_id_of(note))
            return await self.letters.send(letter, "too_large", reason)
        done = await self.outbox.commit(self.stage, message_id, stored)
        return ("committed" if done else "duplicate"), dict(self.spec.counts(result))

    def _check_pack(self, note: BaseModel) -> None:
        check_pack(note, self.runtime.pack if self.spec.checks_pack else None, self.stage.name)


def note_id_of(note: BaseModel) -> str | None:
    return cast(str | None, getattr(note, "note_id", None))


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
