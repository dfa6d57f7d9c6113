"""The worker machinery every stage shares: Redis streams, delivery guarantees, health, status.

One message per note travels ``notes -> spans -> candidates -> verdicts -> codes`` (names in
:mod:`icdcoder.shared.streams`). Each stage is a FastStream app built by :class:`StageWorker` from a
:class:`StageSpec`; ``services/<stage>/app.py`` only says which core to load and what to count.

Guarantees (docs/bus.md has the reasoning):

* every consumer group is created at id ``0`` (MKSTREAM) before anything publishes, so a note
  published before the first worker starts is still read;
* a stage commits a note in one Lua script: XACK the source entry and, only if that ack removed
  it from the pending list, XADD the result and XDEL the source. A crash before the script
  leaves the entry pending (redelivered); a second run of the same entry (a reclaim racing a
  slow consumer) finds it acked and publishes nothing. One source entry, at most one result;
* a reclaimer per worker XAUTOCLAIMs entries idle longer than ``claim_idle_ms`` and feeds them
  to this worker's subscriber; past ``max_deliveries`` they go to the dead-letter stream;
* a message that cannot be parsed, or that the core rejects (``ValueError``), is dead-lettered
  at once with the reason; other errors leave it pending for a retry.

Patient text lives in payloads and dead letters, never in logs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, cast

from faststream import AckPolicy, BaseMiddleware
from faststream.asgi import AsgiFastStream, AsgiResponse, AsyncAPIRoute, get, make_ping_asgi
from faststream.asgi.types import Scope  # at run time: FastStream reads handler annotations
from faststream.redis import RedisBroker, StreamSub
from faststream.redis.annotations import RedisStreamMessage
from faststream.redis.message import DefaultStreamMessage
from faststream.redis.parser import BinaryMessageFormatV1
from faststream.specification import AsyncAPI
from pydantic import BaseModel, ValidationError
from redis.asyncio import Redis
from redis.exceptions import ResponseError
from redis.typing import EncodableT, FieldT
from structlog.contextvars import bound_contextvars

from icdcoder.shared.logging import get_logger
from icdcoder.shared.messages import NOTE_ID_PATTERN, CodedNote, DeadLetter, NoteIn
from icdcoder.shared.settings import BusSettings
from icdcoder.shared.streams import CODES, DEAD_LETTER, NOTES, STAGES, Stage

if TYPE_CHECKING:
    from faststream._internal.context.repository import ContextRepo
    from faststream.asgi.types import ASGIApp, Receive, Send

log = get_logger("icdcoder.bus")

#: The stream-entry field that holds a message: FastStream's name, plain JSON as the value.
PAYLOAD_FIELD = "__data__"
#: Hash of dead-letter counts per stage (kept by the commit script; read by ``status``).
DEAD_LETTER_COUNTS = f"{DEAD_LETTER}:counts"
#: Last error of a failed attempt, kept so a later dead letter can say what went wrong.
FAILURE_KEY = "icdcoder:failure:{stage}:{message_id}"
FAILURE_TTL_S = 7 * 24 * 3600
#: How long a stopping worker waits for the message in hand (Kubernetes: keep the pod's
#: terminationGracePeriodSeconds above it).
GRACEFUL_TIMEOUT_S = 30.0
#: A consumer with nothing pending and idle this many claim periods is gone: it is removed.
STALE_CONSUMER_CLAIM_PERIODS = 10

InT = TypeVar("InT", bound=BaseModel)
OutT = TypeVar("OutT", bound=BaseModel)
Process = Callable[[InT], Awaitable[OutT]]

_NOTE_ID_RE = re.compile(NOTE_ID_PATTERN)

# KEYS: source stream, sink stream, dead-letter counts; ARGV: group, id, payload, stage ("" for
# a result). Ack first: only an entry still pending is published, so a duplicate run is a no-op.
_COMMIT_LUA = """
local acked = redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
if acked == 1 then
  redis.call('XADD', KEYS[2], '*', '__data__', ARGV[3])
  redis.call('XDEL', KEYS[1], ARGV[2])
  if ARGV[4] ~= '' then redis.call('HINCRBY', KEYS[3], ARGV[4], 1) end
end
return acked
"""


# --- wire format ----------------------------------------------------------------------------


def encode_entry(payload: BaseModel | str) -> dict[FieldT, EncodableT]:
    """The stream entry for one message: its JSON under :data:`PAYLOAD_FIELD`."""
    text = payload if isinstance(payload, str) else payload.model_dump_json()
    return {PAYLOAD_FIELD: text}


def entry_payload(fields: Mapping[bytes, bytes] | Mapping[str, str]) -> str:
    """The message text of a stream entry (every field as JSON when the entry is not ours)."""
    for key, value in fields.items():
        if _text(key) == PAYLOAD_FIELD:
            raw = value.encode() if isinstance(value, str) else value
            if raw.startswith(BinaryMessageFormatV1.IDENTITY_HEADER):  # FastStream's own format
                raw = BinaryMessageFormatV1.parse(raw)[0]
            return _text(raw)
    return json.dumps({_text(k): _text(v) for k, v in fields.items()}, ensure_ascii=False)


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value


def guess_note_id(payload: str) -> str | None:
    """The note id of a payload that may be malformed, when one can be read."""
    try:
        data = json.loads(payload)
    except ValueError:
        return None
    note_id = data.get("note_id") if isinstance(data, dict) else None
    return note_id if isinstance(note_id, str) and _NOTE_ID_RE.match(note_id) else None


def describe_error(exc: BaseException) -> str:
    """A one-line reason; for validation errors, field paths and types but never the input."""
    if isinstance(exc, ValidationError):
        problems = [
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']} [{err['type']}]"
            for err in exc.errors(include_url=False, include_input=False, include_context=False)
        ]
        return f"invalid {exc.title}: " + "; ".join(problems)
    return f"{type(exc).__name__}: {exc}"


def describe_invalid(model: type[BaseModel], payload: str, exc: BaseException) -> str:
    """Why ``payload`` is not a ``model`` (bad JSON, missing field, wrong type...)."""
    try:
        model.model_validate_json(payload)
    except ValidationError as invalid:
        return describe_error(invalid)
    return describe_error(exc)


def log_safe_error(exc: BaseException) -> str:
    """What a log line may say about an error: validation summaries, else the type only."""
    return describe_error(exc) if isinstance(exc, ValidationError) else type(exc).__name__


# --- Redis administration -------------------------------------------------------------------


def connect(settings: BusSettings) -> Redis:
    """A client for ``REDIS_URL`` (``redis://`` or ``rediss://`` for TLS, password included)."""
    return Redis.from_url(settings.redis_url.get_secret_value(), decode_responses=False)


async def ensure_groups(redis: Redis) -> None:
    """Create every stage's group at id 0 (and the output streams) before anything publishes."""
    for stage in STAGES.values():
        await _create_group(redis, stage.source, stage.group)
    for stream in (CODES, DEAD_LETTER):
        if not await redis.exists(stream):
            # A throwaway group is the way to create an empty stream.
            await _create_group(redis, stream, "icdcoder-init")
            await redis.xgroup_destroy(stream, "icdcoder-init")


async def _create_group(redis: Redis, stream: str, group: str) -> None:
    try:
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


async def last_id(redis: Redis, stream: str) -> str:
    """The id of the newest entry ever added to ``stream`` ("0-0" when it does not exist)."""
    try:
        info = await redis.xinfo_stream(stream)
    except ResponseError:
        return "0-0"
    return _text(info["last-generated-id"])


# --- committing: ack + publish in one step --------------------------------------------------


class Outbox(Protocol):
    """Where a stage's outcomes go: results, dead letters, and notes of failed attempts."""

    async def commit(self, stage: Stage, message_id: str, result: str) -> bool:
        """Ack the source entry and publish ``result`` to the stage's sink, atomically.

        False when the entry was already acked (another consumer committed it): nothing sent.
        """

    async def dead_letter(self, stage: Stage, message_id: str, letter: DeadLetter) -> bool:
        """Ack the source entry and put ``letter`` on the dead-letter stream, atomically."""

    async def note_failure(self, stage: Stage, message_id: str, error: str) -> None:
        """Remember why an attempt failed (the entry stays pending for a retry)."""

    async def last_failure(self, stage: Stage, message_id: str) -> str | None:
        """The error :meth:`note_failure` kept for this entry, if any."""


class RedisOutbox:
    """The :class:`Outbox` on Redis: one Lua script per commit."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._script = redis.register_script(_COMMIT_LUA)

    async def _run(self, stage: Stage, message_id: str, sink: str, payload: str, tag: str) -> bool:
        keys = [stage.source, sink, DEAD_LETTER_COUNTS]
        acked = await self._script(keys=keys, args=[stage.group, message_id, payload, tag])
        return int(acked) == 1

    async def commit(self, stage: Stage, message_id: str, result: str) -> bool:
        return await self._run(stage, message_id, stage.sink, result, "")

    async def dead_letter(self, stage: Stage, message_id: str, letter: DeadLetter) -> bool:
        done = await self._run(stage, message_id, DEAD_LETTER, letter.model_dump_json(), stage.name)
        await self.redis.delete(FAILURE_KEY.format(stage=stage.name, message_id=message_id))
        return done

    async def note_failure(self, stage: Stage, message_id: str, error: str) -> None:
        key = FAILURE_KEY.format(stage=stage.name, message_id=message_id)
        await self.redis.set(key, error, ex=FAILURE_TTL_S)

    async def last_failure(self, stage: Stage, message_id: str) -> str | None:
        raw = await self.redis.get(FAILURE_KEY.format(stage=stage.name, message_id=message_id))
        return None if raw is None else _text(raw)


# --- a stage as a FastStream app ------------------------------------------------------------


def in_thread(fn: Callable[[InT], OutT]) -> Process[InT, OutT]:
    """Run a blocking core call in a worker thread so health checks keep answering."""

    async def run(note: InT) -> OutT:
        return await asyncio.to_thread(fn, note)

    return run


@dataclass(frozen=True)
class StageSpec(Generic[InT, OutT]):
    """What differs between the stages: the core, its models, what to count in the log line."""

    stage: Stage
    input_model: type[InT]
    output_model: type[OutT]
    #: Builds the core (called once, in a thread, at startup) and returns its async call.
    load: Callable[[], Process[InT, OutT]]
    #: Counts for the canonical log line (spans, candidates, codes...): never text.
    counts: Callable[[OutT], Mapping[str, int]]


@dataclass
class _Runtime(Generic[InT, OutT]):
    process: Process[InT, OutT]
    outbox: Outbox


class FastStreamLog:
    """FastStream's own log calls as our JSON lines; its chatter below WARNING is dropped."""

    def __init__(self, min_level: int = logging.WARNING) -> None:
        self.min_level = min_level
        self._log = get_logger("faststream")

    def log(
        self,
        level: int,
        msg: Any,
        /,
        *args: Any,
        exc_info: Any = None,
        extra: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if level < self.min_level:
            return
        context = {k: v for k, v in (extra or {}).items() if k in ("channel", "message_id")}
        self._log.log(level, str(msg), exc_info=exc_info, **context)


class _RejectUnreadable(BaseMiddleware):
    """Dead-letters a message FastStream could not parse into the stage's input model.

    The handler catches every error of its own, so whatever reaches this hook came from
    decoding or validating the message: retrying it cannot help.
    """

    def __init__(self, msg: Any, /, *, context: ContextRepo, worker: StageWorker[Any, Any]):
        super().__init__(msg, context=context)
        self.worker = worker

    async def after_processed(
        self,
        exc_type: type[BaseException] | None = None,
        exc_val: BaseException | None = None,
        exc_tb: object = None,
    ) -> bool | None:
        if isinstance(exc_val, Exception) and isinstance(self.msg, Mapping):
            await self.worker.reject_unreadable(self.msg, exc_val)
            return True
        return False


class StageWorker(Generic[InT, OutT]):
    """One stage's worker: broker, subscriber, reclaimer, health routes and lifespan.

    ``app`` is the ASGI app (AsyncAPI offline:
    ``faststream docs gen icdcoder.services.<stage>.app:app``); :func:`serve` runs it. Tests call
    :meth:`bind` with a fake core and outbox instead of running the lifespan.
    """

    def __init__(self, spec: StageSpec[InT, OutT], settings: BusSettings | None = None) -> None:
        self.spec = spec
        self.stage = spec.stage
        self.settings = settings or BusSettings()
        self._runtime: _Runtime[InT, OutT] | None = None
        self._lock = asyncio.Lock()  # one note at a time: cores need not be thread-safe
        self._stopping = asyncio.Event()
        self._reclaimer: asyncio.Task[None] | None = None
        self._redis: Redis | None = None

        url = self.settings.redis_url.get_secret_value()
        self.broker = RedisBroker(
            url,
            graceful_timeout=GRACEFUL_TIMEOUT_S,
            middlewares=[cast(Any, partial(_RejectUnreadable, worker=self))],
            logger=FastStreamLog(),
            log_level=logging.DEBUG,  # the canonical line per message is ours
        )
        self.subscriber = self.broker.subscriber(
            stream=StreamSub(
                self.stage.source,
                group=self.stage.group,
                consumer=self.settings.consumer_name,
                max_records=1,  # take one note at a time: replicas share the backlog
            ),
            ack_policy=AckPolicy.MANUAL,  # acked by the commit script, after publishing
            title=f"{self.stage.source}:{self.stage.name}",
            description=f"The {self.stage.name} reads {spec.input_model.__name__} messages.",
        )
        self.subscriber(self._make_handler())
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
        self.app = AsgiFastStream(
            self.broker,
            asgi_routes=[
                ("/healthz/live", _live),
                (
                    "/healthz/ready",
                    make_ping_asgi(self.broker, timeout=2.0, include_in_schema=False),
                ),
            ],
            logger=FastStreamLog(),
            lifespan=self._lifespan,
            after_startup=[self._start_reclaimer],
            on_shutdown=[self._stop_reclaimer],
            asyncapi_path=AsyncAPIRoute("/asyncapi", try_it_out_path=None),
            specification=AsyncAPI(
                title=f"icdcoder {self.stage.name}",
                description=f"{self.stage.source} -> [{self.stage.name}] -> {self.stage.sink}",
            ),
        )

    # -- wiring

    def bind(self, process: Process[InT, OutT], outbox: Outbox) -> None:
        """Give the worker its core and outbox (the lifespan does it; tests pass fakes)."""
        self._runtime = _Runtime(process, outbox)
        self._lock = asyncio.Lock()  # fresh, for the event loop that runs the worker now

    def _make_handler(self) -> Callable[..., Awaitable[None]]:
        async def handler(body: BaseModel, message: RedisStreamMessage) -> None:
            await self.handle(cast(InT, body), message)

        # FastStream reads the payload model from the signature: give it the concrete one.
        handler.__annotations__ = {
            "body": self.spec.input_model,
            "message": RedisStreamMessage,
            "return": None,
        }
        handler.__name__ = handler.__qualname__ = self.stage.name.capitalize()
        return handler

    @asynccontextmanager
    async def _lifespan(self) -> AsyncIterator[None]:
        redis = connect(self.settings)
        self._redis = redis
        try:
            with bound_contextvars(stage=self.stage.name):
                await ensure_groups(redis)
                started = time.perf_counter()
                process = await asyncio.to_thread(self.spec.load)
                log.info("core_loaded", ms=_ms(started), consumer=self.settings.consumer_name)
            self.bind(process, RedisOutbox(redis))
            yield
        finally:
            self._redis = None
            await redis.aclose()

    # -- per message

    @property
    def runtime(self) -> _Runtime[InT, OutT]:
        if self._runtime is None:
            raise RuntimeError(f"{self.stage.name} worker has no core yet (not started)")
        return self._runtime

    async def handle(self, note: InT, message: RedisStreamMessage) -> None:
        """Process one parsed message and commit the outcome; never raises (but cancels)."""
        message_id = _stream_id(message.raw_message)
        note_id = cast(str | None, getattr(note, "note_id", None))
        attempt = _previous_deliveries(message.raw_message) + 1
        started = time.perf_counter()
        with bound_contextvars(stage=self.stage.name, note_id=note_id, message_id=message_id):
            try:
                outcome, counts = await self._process(note, message, message_id, attempt)
            except Exception as exc:  # Redis down while committing: the entry stays pending
                log.error("message", outcome="retry", error=log_safe_error(exc), ms=_ms(started))
                return
            log.info("message", outcome=outcome, attempt=attempt, ms=_ms(started), **counts)

    async def _process(
        self, note: InT, message: RedisStreamMessage, message_id: str, attempt: int
    ) -> tuple[str, Mapping[str, Any]]:
        runtime = self.runtime
        try:
            async with self._lock:
                result = await runtime.process(note)
        except ValueError as exc:  # the core rejects this note: a retry cannot help
            letter = self._letter(
                message_id,
                getattr(note, "note_id", None),
                describe_error(exc),
                attempt,
                entry_payload(message.raw_message["data"]),
            )
            done = await runtime.outbox.dead_letter(self.stage, message_id, letter)
            return ("dead_letter" if done else "duplicate"), {"error": log_safe_error(exc)}
        except Exception as exc:
            await runtime.outbox.note_failure(self.stage, message_id, describe_error(exc))
            return "retry", {"error": log_safe_error(exc)}
        done = await runtime.outbox.commit(self.stage, message_id, result.model_dump_json())
        return ("committed" if done else "duplicate"), dict(self.spec.counts(result))

    async def reject_unreadable(self, raw: Mapping[str, Any], exc: Exception) -> None:
        """Dead-letter a message that is not a valid ``input_model`` (reason, no retry)."""
        message_id = _stream_id(raw)
        payload = entry_payload(raw.get("data") or {})
        reason = describe_invalid(self.spec.input_model, payload, exc)
        note_id = guess_note_id(payload)
        attempt = _previous_deliveries(raw) + 1
        with bound_contextvars(stage=self.stage.name, note_id=note_id, message_id=message_id):
            try:
                letter = self._letter(message_id, note_id, reason, attempt, payload)
                done = await self.runtime.outbox.dead_letter(self.stage, message_id, letter)
            except Exception as failure:
                log.error("message", outcome="retry", error=log_safe_error(failure))
                return
            log.warning("message", outcome="dead_letter" if done else "duplicate", error=reason)

    def _letter(
        self, message_id: str, note_id: str | None, error: str, attempts: int, payload: str
    ) -> DeadLetter:
        return DeadLetter(
            stage=self.stage.name,
            stream=self.stage.source,
            message_id=message_id,
            note_id=note_id,
            error=error,
            attempts=attempts,
            payload=payload,
            failed_at=time.time(),
        )

    # -- reclaiming what dead or stuck consumers hold

    async def _start_reclaimer(self) -> None:
        if self._redis is not None:
            self._stopping = asyncio.Event()
            self._reclaimer = asyncio.create_task(self._reclaim_loop(self._redis))

    async def _stop_reclaimer(self) -> None:
        self._stopping.set()
        if self._reclaimer is not None:
            await self._reclaimer
            self._reclaimer = None

    async def _reclaim_loop(self, redis: Redis) -> None:
        with bound_contextvars(stage=self.stage.name):
            while not self._stopping.is_set():
                try:
                    await self.reclaim(redis)
                    await self.prune_consumers(redis)
                except Exception as exc:
                    log.error("reclaim_failed", error=log_safe_error(exc))
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self.settings.claim_interval_s)

    async def reclaim(self, redis: Redis) -> int:
        """Claim, one at a time, every entry idle past ``claim_idle_ms``; process each here."""
        claimed, cursor = 0, "0-0"
        while not self._stopping.is_set():
            cursor_raw, entries, *_ = await redis.xautoclaim(
                self.stage.source,
                self.stage.group,
                self.settings.consumer_name,
                min_idle_time=self.settings.claim_idle_ms,
                start_id=cursor,
                count=1,
            )
            for raw_id, fields in entries:
                claimed += 1
                await self._redeliver(redis, _text(raw_id), fields)
            cursor = _text(cursor_raw)
            if cursor == "0-0":
                break
        return claimed

    async def _redeliver(self, redis: Redis, message_id: str, fields: dict[bytes, bytes]) -> None:
        pending = await redis.xpending_range(
            self.stage.source, self.stage.group, min=message_id, max=message_id, count=1
        )
        deliveries = int(pending[0]["times_delivered"]) if pending else 1
        if deliveries > self.settings.max_deliveries:
            await self._give_up(message_id, fields, deliveries - 1)
            return
        message = DefaultStreamMessage(
            type="stream",
            channel=self.stage.source,
            message_ids=[message_id.encode()],
            data=fields,
        )
        message["delivery_counts"] = [deliveries - 1]
        await self.subscriber.consume(message)

    async def _give_up(self, message_id: str, fields: Mapping[bytes, bytes], attempts: int) -> None:
        outbox = self.runtime.outbox
        payload = entry_payload(fields)
        note_id = guess_note_id(payload)
        error = await outbox.last_failure(self.stage, message_id)
        reason = f"gave up after {attempts} deliveries" + (
            f"; last error: {error}" if error else " (consumers died or timed out)"
        )
        letter = self._letter(message_id, note_id, reason, attempts, payload)
        with bound_contextvars(note_id=note_id, message_id=message_id):
            done = await outbox.dead_letter(self.stage, message_id, letter)
            log.warning("message", outcome="dead_letter" if done else "duplicate", attempt=attempts)

    async def prune_consumers(self, redis: Redis) -> list[str]:
        """Remove consumers of this group that hold nothing and have long stopped reading."""
        limit_ms = STALE_CONSUMER_CLAIM_PERIODS * self.settings.claim_idle_ms
        removed: list[str] = []
        for consumer in await redis.xinfo_consumers(self.stage.source, self.stage.group):
            name = _text(consumer["name"])
            if (
                name != self.settings.consumer_name
                and int(consumer["pending"]) == 0
                and int(consumer["idle"]) > limit_ms
            ):
                await redis.xgroup_delconsumer(self.stage.source, self.stage.group, name)
                removed.append(name)
        if removed:
            log.info("consumers_pruned", consumers=removed)
        return removed


def _stream_id(raw: Mapping[str, Any]) -> str:
    ids = raw.get("message_ids") or []
    return _text(ids[0]) if ids else ""


def _previous_deliveries(raw: Mapping[str, Any]) -> int:
    counts = raw.get("delivery_counts") or [0]
    return int(counts[0])


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


@get(include_in_schema=False)
async def _live(scope: Scope) -> AsgiResponse:
    """Liveness: the process and its event loop answer."""
    return AsgiResponse(b"", 204)


# --- running a worker -----------------------------------------------------------------------


async def serve(app: AsgiFastStream, *, port: int, host: str = "0.0.0.0") -> None:
    """Run a stage app until SIGTERM/SIGINT, serving its HTTP routes (health, AsyncAPI).

    On a signal the reclaimer stops, the subscriber stops reading and the message in hand is
    finished and committed (up to :data:`GRACEFUL_TIMEOUT_S`) before the process exits.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    exits = _ExitRequest(stop)
    app._server = exits  # FastStream calls app.exit() when a subscriber cannot go on
    server = await asyncio.start_server(partial(_http_exchange, app), host, port)
    bound = server.sockets[0].getsockname()[1] if server.sockets else port
    log.info("http_listening", port=bound)
    try:
        async with app.start_lifespan_context():
            log.info("worker_started")
            await stop.wait()
            log.info("worker_stopping")
    finally:
        server.close()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    log.info("worker_stopped")
    if exits.requested:
        raise RuntimeError("the subscriber stopped (was the stream or its group deleted?)")


class _ExitRequest:
    """FastStream's hook for ``app.exit()``: stop the worker, and exit non-zero after."""

    def __init__(self, stop: asyncio.Event) -> None:
        self.extra_options: dict[str, Any] = {}
        self.requested = False
        self._stop = stop

    def stop(self) -> None:
        self.requested = True
        self._stop.set()


async def _http_exchange(
    app: ASGIApp, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """One HTTP/1.1 GET exchange handed to the ASGI app (enough for probes and docs)."""
    try:
        request = await asyncio.wait_for(reader.readline(), timeout=5.0)
        parts = request.decode("latin-1").split()
        headers: list[tuple[bytes, bytes]] = []
        while True:
            line = await asyncio.wait_for(reader.readline(), timeout=5.0)
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers.append((name.strip().lower().encode(), value.strip().encode()))
        if len(parts) != 3:
            return
        method, target, _ = parts
        path, _, query = target.partition("?")
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method.upper(),
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": headers,
            "client": writer.get_extra_info("peername"),
            "server": writer.get_extra_info("sockname"),
        }
        response: dict[str, Any] = {"status": 500, "headers": [], "body": bytearray()}

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Mapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                response["status"] = message["status"]
                response["headers"] = list(message.get("headers", []))
            elif message["type"] == "http.response.body":
                response["body"] += message.get("body", b"")

        await app(cast("Scope", scope), cast("Receive", receive), cast("Send", send))
        body = bytes(response["body"])
        head = [f"HTTP/1.1 {response['status']} -".encode()]
        head += [k + b": " + v for k, v in response["headers"] if k.lower() != b"content-length"]
        head += [f"content-length: {len(body)}".encode(), b"connection: close"]
        writer.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        await writer.drain()
    except (TimeoutError, ConnectionError):
        pass
    finally:
        writer.close()


# --- status ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class StageStatus:
    """One stage's input stream and group (stream length: entries not yet committed)."""

    stage: str
    stream: str
    length: int
    lag: int | None
    pending: int
    consumers: int
    dead_letters: int


@dataclass(frozen=True)
class BusStatus:
    stages: list[StageStatus]
    codes: int
    dead_letters: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "stages": [vars(s) for s in self.stages],
            "codes": self.codes,
            "dead_letters": self.dead_letters,
        }


async def bus_status(redis: Redis) -> BusStatus:
    """Per-stage stream length, group lag, pending and consumers; results and dead letters."""
    counts = {_text(k): int(v) for k, v in (await redis.hgetall(DEAD_LETTER_COUNTS)).items()}
    stages = []
    for stage in STAGES.values():
        group: Mapping[str, Any] = {}
        with suppress(ResponseError):  # no stream yet
            for info in await redis.xinfo_groups(stage.source):
                if _text(info["name"]) == stage.group:
                    group = info
        lag = group.get("lag")
        stages.append(
            StageStatus(
                stage=stage.name,
                stream=stage.source,
                length=int(await redis.xlen(stage.source)),
                lag=None if lag is None else int(lag),
                pending=int(group.get("pending", 0)),
                consumers=int(group.get("consumers", 0)),
                dead_letters=counts.get(stage.name, 0),
            )
        )
    return BusStatus(
        stages=stages,
        codes=int(await redis.xlen(CODES)),
        dead_letters=int(await redis.xlen(DEAD_LETTER)),
    )


# --- submitting notes and following their results -------------------------------------------


async def submit_notes(redis: Redis, notes: Iterable[NoteIn]) -> list[str]:
    """Publish notes to the notes stream (groups first); returns their entry ids."""
    await ensure_groups(redis)
    ids = []
    for note in notes:
        ids.append(_text(await redis.xadd(NOTES, encode_entry(note))))
    return ids


@dataclass
class Outcome:
    """A submitted note's end: its result, or the dead letter that stopped it."""

    note_id: str
    coded: CodedNote | None = None
    dead_letter: DeadLetter | None = None


@dataclass
class ResultFollower:
    """Reads the codes and dead-letter streams from a point taken before publishing.

    Yields one :class:`Outcome` per awaited note id (a second result for an id is ignored),
    until every id has one or ``timeout_s`` passes.
    """

    redis: Redis
    since: dict[str, str] = field(default_factory=dict)

    async def mark(self) -> None:
        """Remember where the output streams end now: call before publishing."""
        await ensure_groups(self.redis)
        for stream in (CODES, DEAD_LETTER):
            self.since[stream] = await last_id(self.redis, stream)

    async def follow(self, note_ids: Sequence[str], timeout_s: float) -> AsyncIterator[Outcome]:
        waiting = set(note_ids)
        deadline = time.monotonic() + timeout_s
        while waiting:
            block_ms = int((deadline - time.monotonic()) * 1000)
            if block_ms <= 0:
                return
            reply = cast(
                "list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]] | None",
                await self.redis.xread(
                    cast(Any, dict(self.since)), block=min(block_ms, 1000), count=100
                ),
            )
            for stream_raw, entries in reply or []:
                stream = _text(stream_raw)
                for raw_id, fields in entries:
                    self.since[stream] = _text(raw_id)
                    outcome = _outcome(stream, entry_payload(fields))
                    if outcome is not None and outcome.note_id in waiting:
                        waiting.discard(outcome.note_id)
                        yield outcome


def _outcome(stream: str, payload: str) -> Outcome | None:
    try:
        if stream == CODES:
            coded = CodedNote.model_validate_json(payload)
            return Outcome(coded.note_id, coded=coded)
        letter = DeadLetter.model_validate_json(payload)
    except ValidationError:
        return None
    return None if letter.note_id is None else Outcome(letter.note_id, dead_letter=letter)
