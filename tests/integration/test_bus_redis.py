"""The bus on a real Redis, with fake cores: groups, commits, reclaiming, dead letters, status.

Each test owns Redis database 14 (``ICDCODER_TEST_REDIS_URL`` overrides the server), flushed
before and after.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, cast

import httpx
import pytest
from pydantic import BaseModel
from redis.asyncio import Redis
from redis.typing import EncodableT, FieldT

from icdcoder.shared.bus.admin import ensure_groups
from icdcoder.shared.bus.client import ResultFollower, bus_status, submit_notes
from icdcoder.shared.bus.outbox import DEAD_LETTER_COUNTS, RedisOutbox
from icdcoder.shared.bus.stage import LoadedStage, StageSpec
from icdcoder.shared.bus.wire import encode_entry, entry_bytes
from icdcoder.shared.bus.worker import StageWorker
from icdcoder.shared.messages import (
    CodedNote,
    DeadLetter,
    NoteIn,
    RetrievedNote,
    SegmentedNote,
    VerifiedNote,
    VerifierInfo,
)
from icdcoder.shared.settings import BusConfig, Settings
from icdcoder.shared.streams import CODES, DEAD_LETTER, NOTES, SPANS, STAGES
from tests.integration.conftest import TEST_URL

pytestmark = pytest.mark.redis

TEXT = "Patient has type 2 diabetes."
INFO = VerifierInfo(backend="fake")


def bus_settings(consumer: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "redis_url": TEST_URL,
        "consumer_name": consumer,
        "claim_idle_ms": 60_000,
        "claim_interval_s": 0.05,
        "max_deliveries": 5,
    }
    values.update(overrides)
    return Settings().with_section(bus=BusConfig.model_validate(values))


# Fake cores: each passes the note on with an empty layer of its own.


async def fake_segment(note: NoteIn) -> SegmentedNote:
    if note.text == "reject":
        raise ValueError("the note cannot be segmented")
    return SegmentedNote(note_id=note.note_id, text=note.text, spans=[])


async def fake_retrieve(note: SegmentedNote) -> RetrievedNote:
    return RetrievedNote(note_id=note.note_id, text=note.text, catalogue_version="t", items=[])


async def fake_verify(note: RetrievedNote) -> VerifiedNote:
    return VerifiedNote(
        note_id=note.note_id,
        text=note.text,
        catalogue_version=note.catalogue_version,
        items=[],
        verdicts=[],
        verifier=INFO,
    )


async def fake_aggregate(note: VerifiedNote) -> CodedNote:
    return CodedNote(
        note_id=note.note_id, catalogue_version="t", codes=[], excluded=[], verifier=INFO
    )


FAKES: dict[str, tuple[type[BaseModel], type[BaseModel], Callable[[Any], Awaitable[Any]]]] = {
    "segmenter": (NoteIn, SegmentedNote, fake_segment),
    "retriever": (SegmentedNote, RetrievedNote, fake_retrieve),
    "verifier": (RetrievedNote, VerifiedNote, fake_verify),
    "aggregator": (VerifiedNote, CodedNote, fake_aggregate),
}


def fake_worker(
    stage: str,
    consumer: str = "w1",
    process: Callable[[Any], Awaitable[Any]] | None = None,
    **settings: Any,
) -> StageWorker[Any, Any]:
    input_model, output_model, default = FAKES[stage]
    core = process or default
    spec: StageSpec[Any, Any] = StageSpec(
        STAGES[stage], input_model, output_model, lambda _: LoadedStage(core), lambda _: {}
    )
    return StageWorker(spec, bus_settings(consumer, **settings))


@asynccontextmanager
async def running(*workers: StageWorker[Any, Any]) -> AsyncIterator[None]:
    """Workers started as ``icdcoder worker`` starts them (lifespan, broker, reclaimer)."""
    async with _running(list(workers)):
        yield


@asynccontextmanager
async def _running(workers: list[StageWorker[Any, Any]]) -> AsyncIterator[None]:
    if not workers:
        yield
        return
    async with workers[0].app.start_lifespan_context(), _running(workers[1:]):
        yield


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def entries(redis: Redis, stream: str) -> list[str]:
    found = cast("list[tuple[bytes, dict[bytes, bytes]]]", await redis.xrange(stream))
    return [entry_bytes(fields).decode() for _, fields in found]


async def xadd(redis: Redis, stream: str, fields: Mapping[str, str]) -> None:
    await redis.xadd(stream, cast("dict[FieldT, EncodableT]", dict(fields)))


async def read_as(redis: Redis, stage: str, consumer: str) -> str:
    """Deliver the next entry of ``stage``'s stream to ``consumer``; its id."""
    source = STAGES[stage].source
    reply = await redis.xreadgroup(STAGES[stage].group, consumer, {source: ">"}, count=1)
    ((_, [(message_id, _)]),) = cast("list[tuple[bytes, list[tuple[bytes, Any]]]]", reply)
    return message_id.decode()


async def pending(redis: Redis, stage: str) -> int:
    info = await redis.xpending(STAGES[stage].source, STAGES[stage].group)
    return int(info["pending"])


def note(note_id: str, text: str = TEXT) -> NoteIn:
    return NoteIn(note_id=note_id, text=text)


async def dead_letters(redis: Redis) -> list[DeadLetter]:
    return [DeadLetter.model_validate_json(p) for p in await entries(redis, DEAD_LETTER)]


# --- groups ---------------------------------------------------------------------------------


async def test_groups_start_at_zero_so_entries_published_before_any_worker_are_read(
    redis: Redis,
) -> None:
    await redis.xadd(NOTES, encode_entry(note("early")))  # a publisher that made no group
    await ensure_groups(redis)
    for stage in STAGES.values():
        (group,) = await redis.xinfo_groups(stage.source)
        assert group["name"].decode() == stage.group
        assert group["last-delivered-id"] == b"0-0"
    assert await redis.exists(CODES, DEAD_LETTER) == 2
    await ensure_groups(redis)  # idempotent

    async with running(fake_worker("segmenter")):
        await eventually(lambda: _length(redis, SPANS, 1))
    (payload,) = await entries(redis, SPANS)
    assert SegmentedNote.model_validate_json(payload).note_id == "early"


async def _length(redis: Redis, stream: str, n: int) -> bool:
    return int(await redis.xlen(stream)) >= n


# --- the commit script ----------------------------------------------------------------------


async def test_commit_acks_publishes_and_deletes_once(redis: Redis) -> None:
    await ensure_groups(redis)
    stage = STAGES["segmenter"]
    await redis.xadd(NOTES, encode_entry(note("n1")))
    message_id = await read_as(redis, "segmenter", "c")
    outbox = RedisOutbox(redis)

    assert await outbox.commit(stage, message_id, '{"r": 1}') is True
    assert await outbox.commit(stage, message_id, '{"r": 2}') is False

    assert await entries(redis, SPANS) == ['{"r": 1}']
    assert await redis.xlen(NOTES) == 0
    assert await pending(redis, "segmenter") == 0


async def test_dead_letter_counts_per_stage_and_forgets_the_failure(redis: Redis) -> None:
    await ensure_groups(redis)
    stage = STAGES["retriever"]
    await xadd(redis, SPANS, {"__data__": "x"})
    message_id = await read_as(redis, "retriever", "c")
    outbox = RedisOutbox(redis)
    await outbox.note_failure(stage, message_id, "RuntimeError: boom")
    assert await outbox.last_failure(stage, message_id) == "RuntimeError: boom"
    letter = DeadLetter(
        stage="retriever", stream=SPANS, message_id=message_id, error="e", attempts=1,
        payload="x", failed_at=0.0,
    )  # fmt: skip

    assert await outbox.dead_letter(stage, message_id, letter) is True
    assert await outbox.dead_letter(stage, message_id, letter) is False

    assert await dead_letters(redis) == [letter]
    assert await redis.hgetall(DEAD_LETTER_COUNTS) == {b"retriever": b"1"}
    assert await outbox.last_failure(stage, message_id) is None


# --- workers --------------------------------------------------------------------------------


async def test_four_workers_code_submitted_notes_and_the_follower_sees_each_once(
    redis: Redis,
) -> None:
    follower = ResultFollower(redis)
    await follower.mark()
    notes = [note(f"n{i}") for i in range(5)] + [note("bad", "reject")]
    await submit_notes(redis, notes)

    async with running(*(fake_worker(stage) for stage in STAGES)):
        outcomes = [o async for o in follower.follow([n.note_id for n in notes], 30)]

    coded = {o.note_id for o in outcomes if o.coded is not None}
    assert coded == {f"n{i}" for i in range(5)}
    (rejected,) = [o for o in outcomes if o.dead_letter is not None]
    assert rejected.note_id == "bad"
    assert rejected.dead_letter is not None
    assert rejected.dead_letter.stage == "segmenter"
    assert "cannot be segmented" in rejected.dead_letter.error
    status = await bus_status(redis)
    assert status.codes == 5 and status.dead_letters == 1
    by_stage = {s.stage: s for s in status.stages}
    assert by_stage["segmenter"].dead_letters == 1
    assert all(s.length == 0 and s.pending == 0 and s.lag == 0 for s in status.stages)


async def test_follower_stops_at_its_timeout(redis: Redis) -> None:
    follower = ResultFollower(redis)
    await follower.mark()
    assert [o async for o in follower.follow(["never"], 0.3)] == []


async def test_a_dead_consumers_message_is_reclaimed_by_a_live_one(redis: Redis) -> None:
    await submit_notes(redis, [note("orphan")])
    await read_as(redis, "segmenter", "dead")  # and never acks
    assert await pending(redis, "segmenter") == 1

    async with running(fake_worker("segmenter", "live", claim_idle_ms=100)):
        await eventually(lambda: _length(redis, SPANS, 1))
        await eventually(lambda: _pending_is(redis, "segmenter", 0))

    (payload,) = await entries(redis, SPANS)
    assert SegmentedNote.model_validate_json(payload).note_id == "orphan"
    assert await dead_letters(redis) == []


async def _pending_is(redis: Redis, stage: str, n: int) -> bool:
    return await pending(redis, stage) == n


async def test_a_message_failing_every_delivery_is_dead_lettered_after_max_deliveries(
    redis: Redis,
) -> None:
    calls = 0

    async def broken(note: NoteIn) -> SegmentedNote:
        nonlocal calls
        calls += 1
        raise RuntimeError("model server unreachable")

    await submit_notes(redis, [note("doomed")])
    worker = fake_worker("segmenter", process=broken, claim_idle_ms=50, max_deliveries=3)
    async with running(worker):
        await eventually(lambda: _length(redis, DEAD_LETTER, 1))

    (letter,) = await dead_letters(redis)
    assert calls == 3
    assert letter.attempts == 3
    assert letter.note_id == "doomed"
    assert letter.stage == "segmenter" and letter.stream == NOTES
    assert "gave up after 3 deliveries" in letter.error
    assert "RuntimeError: model server unreachable" in letter.error
    assert NoteIn.model_validate_json(letter.payload) == note("doomed")
    assert await redis.xlen(SPANS) == 0
    assert await pending(redis, "segmenter") == 0


async def test_a_slow_consumer_racing_a_reclaim_publishes_no_second_result(
    redis: Redis,
) -> None:
    slow_started = asyncio.Event()
    release = asyncio.Event()

    async def slow(note: NoteIn) -> SegmentedNote:
        slow_started.set()
        await release.wait()
        return await fake_segment(note)

    slow_worker = fake_worker("segmenter", "slow", process=slow)
    fast_worker = fake_worker("segmenter", "fast", claim_idle_ms=100)
    async with running(slow_worker):
        await submit_notes(redis, [note("raced")])
        await asyncio.wait_for(slow_started.wait(), 10)
        async with running(fast_worker):  # reclaims the entry the slow one holds
            await eventually(lambda: _length(redis, SPANS, 1))
        release.set()  # the slow one finishes too; stopping waits for its commit

    assert len(await entries(redis, SPANS)) == 1
    assert await pending(redis, "segmenter") == 0


@pytest.mark.parametrize("stage", list(STAGES))
async def test_malformed_messages_on_each_stream_are_dead_lettered_and_the_stage_keeps_serving(
    redis: Redis, stage: str
) -> None:
    source = STAGES[stage].source
    await ensure_groups(redis)
    bad: list[dict[str, str]] = [
        {"__data__": "{not json"},
        {"__data__": '{"note_id": "m-1"}'},
        {"__data__": '{"note_id": 7, "text": 7}'},
        {"note_id": "raw-fields"},
    ]
    for fields in bad:
        await xadd(redis, source, fields)
    valid = await _valid_input(stage)
    await redis.xadd(source, encode_entry(valid))

    async with running(fake_worker(stage)):
        await eventually(lambda: _length(redis, STAGES[stage].sink, 1))
        await eventually(lambda: _length(redis, DEAD_LETTER, 4))

    letters = await dead_letters(redis)
    reasons = [letter.error for letter in letters]
    assert "json_invalid" in reasons[0]
    assert "missing" in reasons[1]
    assert "string_type" in reasons[2]
    assert "missing" in reasons[3]
    assert [letter.note_id for letter in letters] == [None, "m-1", None, "raw-fields"]
    assert all(letter.stage == stage and letter.stream == source for letter in letters)
    assert letters[0].payload == "{not json"
    assert await pending(redis, stage) == 0
    assert await redis.xlen(source) == 0


async def _valid_input(stage: str) -> BaseModel:
    model: BaseModel = note("ok")
    for name in list(STAGES)[: list(STAGES).index(stage)]:
        model = await FAKES[name][2](model)
    return model


async def test_stopping_finishes_and_commits_the_message_in_hand(redis: Redis) -> None:
    started = asyncio.Event()

    async def slow(note: NoteIn) -> SegmentedNote:
        started.set()
        await asyncio.sleep(0.5)
        return await fake_segment(note)

    await submit_notes(redis, [note("in-flight"), note("not-started")])
    async with running(fake_worker("segmenter", process=slow)):
        await asyncio.wait_for(started.wait(), 10)
    # Stopped while the first note was in hand: it was finished and committed.
    (payload,) = await entries(redis, SPANS)
    assert SegmentedNote.model_validate_json(payload).note_id == "in-flight"
    assert await pending(redis, "segmenter") == 0
    assert await redis.xlen(NOTES) == 1  # the other one waits for the next worker


async def test_ready_once_connected(redis: Redis) -> None:
    worker = fake_worker("segmenter")
    async with running(worker):
        await eventually(lambda: _status_is(worker, "/healthz/ready", 204))
        assert await _get_status(worker, "/healthz/live") == 204


async def _status_is(worker: StageWorker[Any, Any], path: str, code: int) -> bool:
    return await _get_status(worker, path) == code


async def _get_status(worker: StageWorker[Any, Any], path: str) -> int:
    transport = httpx.ASGITransport(app=worker.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://worker") as client:
        return (await client.get(path)).status_code


async def test_stale_consumers_are_pruned_but_not_those_holding_messages(redis: Redis) -> None:
    await submit_notes(redis, [note("held")])
    await read_as(redis, "segmenter", "holder")
    await redis.xgroup_createconsumer(NOTES, "segmenter", "gone")  # holds nothing
    worker = fake_worker("segmenter", "me", claim_idle_ms=1)
    await asyncio.sleep(0.05)
    removed = await worker.maintenance.prune_consumers(redis)
    assert removed == ["gone"]
    names = {c["name"].decode() for c in await redis.xinfo_consumers(NOTES, "segmenter")}
    assert names == {"holder"}
