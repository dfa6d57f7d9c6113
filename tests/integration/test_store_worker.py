"""The store worker on a real Redis and SQLite: results and dead letters land in the store,
once, unreadable entries are kept as failures, and stored entries leave Redis."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from icdcoder.services.store.app import GROUP, StoreWorker
from icdcoder.shared.bus.wire import encode_entry
from icdcoder.shared.messages import DeadLetter, NoteIn
from icdcoder.shared.settings import BusConfig, Settings, StoreConfig
from icdcoder.shared.store.migrate import open_store
from icdcoder.shared.store.repository import Store
from icdcoder.shared.streams import CODES, DEAD_LETTER
from tests.integration.conftest import TEST_URL
from tests.integration.test_store import coded_for

pytestmark = pytest.mark.redis


def settings(tmp_path: Path, **bus: Any) -> Settings:
    return Settings().with_section(
        bus=BusConfig(redis_url=TEST_URL, consumer_name="store-1", claim_interval_s=0.05, **bus),
        store=StoreConfig(url=f"sqlite:///{tmp_path / 'store.db'}", trim_after_s=0),
    )


async def eventually(check: Any, timeout_s: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


async def test_results_and_dead_letters_are_stored_once_and_leave_redis(
    redis: Redis, tmp_path: Path
) -> None:
    config = settings(tmp_path)
    worker = StoreWorker(config, lambda: open_store(config.store))
    note = NoteIn(note_id="n1", text="Type 2 diabetes.")
    await redis.xadd(CODES, encode_entry(coded_for(note)))
    await redis.xadd(CODES, encode_entry(coded_for(note)))  # a duplicate result
    letter = DeadLetter(
        stage="segmenter", stream="icdcoder:notes", message_id="1-0", note_id="n2",
        error="ValueError: the note is empty", attempts=1,
        payload=NoteIn(note_id="n2", text=" x").model_dump_json(), failed_at=0.0,
    )  # fmt: skip
    await redis.xadd(DEAD_LETTER, encode_entry(letter))
    await redis.xadd(CODES, {"__data__": "{not a result"})

    async with worker.app.start_lifespan_context():
        store: Store = await _store(worker)
        await eventually(lambda: _counts(store, results=1, failures=2))
        await eventually(lambda: _length(redis, CODES, 0))  # stored: trimmed from Redis
        await eventually(lambda: _length(redis, DEAD_LETTER, 0))
    for stream in (CODES, DEAD_LETTER):
        assert (await redis.xpending(stream, GROUP))["pending"] == 0
    stored = store.latest("n2")
    assert stored is not None and stored.note.status == "failed"
    assert stored.failure == "ValueError: the note is empty"


async def _store(worker: StoreWorker) -> Store:
    await eventually(lambda: _true(worker.store is not None))
    assert worker.store is not None
    return worker.store


async def _true(value: bool) -> bool:
    return value


async def _counts(store: Store, **wanted: int) -> bool:
    counts = await asyncio.to_thread(store.counts)
    return all(counts.get(k, 0) == v for k, v in wanted.items())


async def _length(redis: Redis, stream: str, n: int) -> bool:
    return int(await redis.xlen(stream)) == n


async def test_nothing_is_trimmed_before_it_is_stored(redis: Redis, tmp_path: Path) -> None:
    config = settings(tmp_path)
    worker = StoreWorker(config, lambda: open_store(config.store))
    await redis.xgroup_create(CODES, GROUP, id="0", mkstream=True)
    await redis.xadd(CODES, encode_entry(coded_for(NoteIn(note_id="n1", text="Gout."))))
    # not delivered to the store group yet: nothing may go
    assert await worker.trim(redis, older_than_s=0) == 0
    assert await redis.xlen(CODES) == 1
