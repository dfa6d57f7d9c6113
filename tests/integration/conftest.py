"""Fixtures of the integration tests: the Redis database they own."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

#: Redis database 14 of the local server (``ICDCODER_TEST_REDIS_URL`` overrides it).
TEST_URL = os.environ.get("ICDCODER_TEST_REDIS_URL", "redis://127.0.0.1:6379/14")


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(TEST_URL)
    try:
        await client.ping()
    except (RedisConnectionError, OSError):
        pytest.skip(f"no Redis at {TEST_URL}")
    await client.flushdb()
    try:
        yield client
    finally:
        await client.flushdb()
        await client.aclose()
