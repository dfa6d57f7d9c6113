"""Redis administration for the bus: the client, the streams and groups every stage needs.

Every consumer group is created at id ``0`` (MKSTREAM) before anything publishes, so a note
published before the first worker starts is still read. A Redis that restarts without
persistence (cache mode, a failover that loses the streams) comes back without them:
:func:`ensure_groups` recreates what is missing and says which, so a worker can log the loss
and go on instead of stopping.
"""

from __future__ import annotations

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from icdcoder.shared.settings import BusConfig
from icdcoder.shared.streams import CODES, DEAD_LETTER, STAGES


def connect(config: BusConfig) -> Redis:
    """A client for the bus URL (``redis://`` or ``rediss://`` for TLS, password included),
    with a bounded health check so a dead connection is noticed."""
    return Redis.from_url(
        config.redis_url.get_secret_value(),
        decode_responses=False,
        health_check_interval=30,
        socket_connect_timeout=5,
        retry_on_timeout=True,
    )


async def ensure_groups(redis: Redis) -> list[str]:
    """Create every stage's group at id 0 (and the output streams) where missing; returns
    ``stream:group`` for each one created."""
    created = []
    for stage in STAGES.values():
        if await _create_group(redis, stage.source, stage.group):
            created.append(f"{stage.source}:{stage.group}")
    for stream in (CODES, DEAD_LETTER):
        if not await redis.exists(stream):
            # A throwaway group is the way to create an empty stream.
            await _create_group(redis, stream, "icdcoder-init")
            await redis.xgroup_destroy(stream, "icdcoder-init")
    return created


async def _create_group(redis: Redis, stream: str, group: str) -> bool:
    try:
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
        return False
    return True


async def last_id(redis: Redis, stream: str) -> str:
    """The id of the newest entry ever added to ``stream`` ("0-0" when it does not exist)."""
    try:
        info = await redis.xinfo_stream(stream)
    except ResponseError:
        return "0-0"
    raw = info["last-generated-id"]
    return raw.decode() if isinstance(raw, bytes) else str(raw)
