"""Committing a stage's outcome: ack the source entry and publish, in one atomic step.

No library does ack + publish atomically on Redis, so this is one Lua script: XACK the source
entry and, only if that ack removed it from the pending list, XADD the result and XDEL the
source. A crash before the script leaves the entry pending (redelivered); a second run of the
same entry (a reclaim racing a slow consumer) finds it acked and publishes nothing. One source
entry gives at most one result.
"""

from __future__ import annotations

from typing import Protocol

from redis.asyncio import Redis

from icdcoder.shared.messages import DeadLetter
from icdcoder.shared.streams import DEAD_LETTER, Stage

#: Hash of dead-letter counts per stage (kept by the commit script; read by ``status``).
DEAD_LETTER_COUNTS = f"{DEAD_LETTER}:counts"
#: Last error of a failed attempt, kept so a later dead letter can say what went wrong.
FAILURE_KEY = "icdcoder:failure:{stage}:{message_id}"
FAILURE_TTL_S = 7 * 24 * 3600

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


class Outbox(Protocol):
    """Where a stage's outcomes go: results, dead letters, and notes of failed attempts."""

    async def commit(self, stage: Stage, message_id: str, result: str | bytes) -> bool:
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

    async def _run(
        self, stage: Stage, message_id: str, sink: str, payload: str | bytes, tag: str
    ) -> bool:
        keys = [stage.source, sink, DEAD_LETTER_COUNTS]
        acked = await self._script(keys=keys, args=[stage.group, message_id, payload, tag])
        return int(acked) == 1

    async def commit(self, stage: Stage, message_id: str, result: str | bytes) -> bool:
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
        if raw is None:
            return None
        return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
