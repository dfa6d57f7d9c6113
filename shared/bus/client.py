"""The bus from outside: submitting notes, following their results, the status of each stage."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any, cast

from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from icdcoder.shared.bus.admin import ensure_groups, last_id
from icdcoder.shared.bus.outbox import DEAD_LETTER_COUNTS
from icdcoder.shared.bus.wire import encode_entry, entry_bytes
from icdcoder.shared.errors import loggable
from icdcoder.shared.logging import get_logger
from icdcoder.shared.messages import CodedNote, DeadLetter, NoteIn
from icdcoder.shared.streams import CODES, DEAD_LETTER, NOTES, STAGES

log = get_logger("icdcoder.bus")

#: Longest wait between reconnection attempts of a follower.
MAX_BACKOFF_S = 5.0


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


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
    until every id has one or ``timeout_s`` passes. A lost connection (Redis restarting) is
    retried with backoff, and reading resumes after the last entry seen.
    """

    redis: Redis
    since: dict[str, str] = field(default_factory=dict)
    reconnects: int = 0

    async def mark(self) -> None:
        """Remember where the output streams end now: call before publishing."""
        await ensure_groups(self.redis)
        for stream in (CODES, DEAD_LETTER):
            self.since[stream] = await last_id(self.redis, stream)

    async def follow(self, note_ids: Sequence[str], timeout_s: float) -> AsyncIterator[Outcome]:
        waiting = set(note_ids)
        deadline = time.monotonic() + timeout_s
        backoff = 0.1
        while waiting:
            block_ms = int((deadline - time.monotonic()) * 1000)
            if block_ms <= 0:
                return
            try:
                reply = await self._read(min(block_ms, 1000))
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                self.reconnects += 1
                log.warning("follower_reconnecting", error=loggable(exc), attempt=self.reconnects)
                await asyncio.sleep(min(backoff, max(0.0, deadline - time.monotonic())))
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                continue
            backoff = 0.1
            for stream_raw, entries in reply or []:
                stream = _text(stream_raw)
                for raw_id, fields in entries:
                    self.since[stream] = _text(raw_id)
                    outcome = _outcome(stream, entry_bytes(fields))
                    if outcome is not None and outcome.note_id in waiting:
                        waiting.discard(outcome.note_id)
                        yield outcome

    async def _read(self, block_ms: int) -> list[tuple[bytes, list[tuple[bytes, Any]]]] | None:
        return cast(
            "list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]] | None",
            await self.redis.xread(cast(Any, dict(self.since)), block=block_ms, count=100),
        )


def _outcome(stream: str, payload: bytes) -> Outcome | None:
    try:
        if stream == CODES:
            coded = CodedNote.model_validate_json(payload)
            return Outcome(coded.note_id, coded=coded)
        letter = DeadLetter.model_validate_json(payload)
    except ValidationError:
        return None
    return None if letter.note_id is None else Outcome(letter.note_id, dead_letter=letter)


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
