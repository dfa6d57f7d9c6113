"""Dead letters: what a stage gives up on, kept with the reason so nothing is lost silently.

A letter holds the entry's payload exactly as received (text, or base64 of bytes that are not
UTF-8), the stage, the entry id, the note id when one can be read, the attempts and the reason.
The reason names fields, types and sizes, never values: it may be shown in a log or a status
page. Building a letter cannot fail: an error while describing an unreadable message gives a
letter with a generic reason, and one while sending it leaves the entry pending for the next
reclaim.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from faststream import BaseMiddleware
from pydantic import BaseModel, ValidationError
from structlog.contextvars import bound_contextvars

from icdcoder.shared.bus.metrics import WorkerMetrics
from icdcoder.shared.bus.outbox import Outbox
from icdcoder.shared.bus.wire import (
    Payload,
    PayloadError,
    entry_bytes,
    guess_note_id,
    payload_of,
    unpack_payload,
)
from icdcoder.shared.errors import describe_error, loggable
from icdcoder.shared.logging import get_logger
from icdcoder.shared.messages import DeadLetter
from icdcoder.shared.streams import Stage

if TYPE_CHECKING:
    from faststream._internal.context.repository import ContextRepo

log = get_logger("icdcoder.bus")

#: (outcome, counts for the canonical log line)
Outcome = tuple[str, Mapping[str, Any]]


def unreadable_reason(model: type[BaseModel], payload: Payload, exc: BaseException) -> str:
    """Why ``payload`` is not a ``model``: not UTF-8, not JSON, a missing field, a wrong type."""
    if not payload.is_text:
        return "not UTF-8: the payload's bytes are kept as base64"
    try:
        model.model_validate_json(payload.text)
    except ValidationError as invalid:
        return describe_error(invalid)
    except Exception as other:
        return f"unreadable ({type(other).__name__})"
    return f"unreadable ({type(exc).__name__})"


def stream_id(raw: Mapping[str, Any]) -> str:
    ids = raw.get("message_ids") or []
    if not ids:
        return ""
    first = ids[0]
    return first.decode("utf-8", "replace") if isinstance(first, bytes) else str(first)


def previous_deliveries(raw: Mapping[str, Any]) -> int:
    counts = raw.get("delivery_counts") or [0]
    return int(counts[0])


@dataclass
class DeadLetters:
    """Writes one stage's dead letters through its outbox and counts them."""

    stage: Stage
    input_model: type[BaseModel]
    outbox: Callable[[], Outbox]
    metrics: WorkerMetrics

    def letter(
        self, message_id: str, note_id: str | None, error: str, attempts: int, payload: Payload
    ) -> DeadLetter:
        return DeadLetter(
            stage=self.stage.name,
            stream=self.stage.source,
            message_id=message_id,
            note_id=note_id,
            error=error,
            attempts=attempts,
            payload=payload.text,
            payload_encoding=payload.encoding,
            failed_at=time.time(),
        )

    def letter_for(
        self, raw: Mapping[str, Any], reason: str, attempts: int, note_id: str | None = None
    ) -> DeadLetter:
        """The letter for a delivered message (``raw``: FastStream's raw stream message)."""
        data = entry_bytes(raw["data"])
        return self.letter(
            stream_id(raw), note_id or guess_note_id(data), reason, attempts, payload_of(data)
        )

    async def send(self, letter: DeadLetter, kind: str, logged: str) -> Outcome:
        """Dead-letter the entry; ``logged`` is what the log line says of why (no text)."""
        done = await self.outbox().dead_letter(self.stage, letter.message_id, letter)
        if done:
            self.metrics.dead_letters.labels(self.stage.name, kind).inc()
        return ("dead_letter" if done else "duplicate"), {"error": logged, "kind": kind}

    async def give_up(self, raw: Mapping[str, Any], attempts: int) -> Outcome:
        """The entry failed every delivery: dead-letter it with the last error kept."""
        error = await self.outbox().last_failure(self.stage, stream_id(raw))
        gave_up = f"gave up after {attempts} deliveries"
        reason = gave_up + (f"; last error: {error}" if error else " (consumers died or timed out)")
        return await self.send(self.letter_for(raw, reason, attempts), "gave_up", gave_up)

    async def reject_unreadable(self, raw: Mapping[str, Any], exc: Exception) -> None:
        """Dead-letter a message that is not a valid input (reason, no retry); never raises."""
        message_id = stream_id(raw)
        try:
            stored = entry_bytes(raw.get("data") or {})
            payload = payload_of(stored)
            try:
                unpack_payload(stored)
                reason = unreadable_reason(self.input_model, payload, exc)
            except PayloadError as bad:
                reason = str(bad)
            note_id = guess_note_id(payload.text) if payload.is_text else None
            attempts = previous_deliveries(raw) + 1
            letter = self.letter(message_id, note_id, reason, attempts, payload)
        except Exception:
            note_id = None
            letter = self.letter(message_id, None, "unreadable message", 1, Payload("", "utf-8"))
        with bound_contextvars(stage=self.stage.name, note_id=note_id, message_id=message_id):
            try:
                outcome, _ = await self.send(letter, "unreadable", letter.error)
            except Exception as failure:
                self.metrics.messages.labels(self.stage.name, "retry").inc()
                log.error("message", outcome="retry", error=loggable(failure))
                return
            self.metrics.messages.labels(self.stage.name, outcome).inc()
            log.warning("message", outcome=outcome, error=letter.error)


OnUnreadable = Callable[[Mapping[str, Any], Exception], Awaitable[None]]


class Unreadable(BaseMiddleware):
    """Hands a message FastStream could not parse into the handler's model to ``handle``
    (dead-letter it, keep it as a failure), then counts it as dealt with.

    The handlers catch every error of their own, so whatever reaches this hook came from
    decoding or validating the message: retrying it cannot help.
    """

    def __init__(self, msg: Any, /, *, context: ContextRepo, handle: OnUnreadable) -> None:
        super().__init__(msg, context=context)
        self.handle = handle

    async def after_processed(
        self,
        exc_type: type[BaseException] | None = None,
        exc_val: BaseException | None = None,
        exc_tb: object = None,
    ) -> bool | None:
        if isinstance(exc_val, Exception) and isinstance(self.msg, Mapping):
            await self.handle(self.msg, exc_val)
            return True
        return False


def unreadable_middleware(handle: OnUnreadable) -> Any:
    """The middleware factory FastStream's broker takes."""
    return partial(Unreadable, handle=handle)
