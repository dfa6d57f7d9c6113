"""The four stage apps on FastStream's in-memory TestRedisBroker, with fake cores and outbox.

Real Redis (the commit script, reclaiming, groups) is covered in tests/integration/test_bus_*.
"""

from __future__ import annotations

import asyncio
import base64
import importlib
import logging
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import httpx
import pytest
import structlog
from faststream.redis import TestRedisBroker
from pydantic import BaseModel, ValidationError

from icdcoder.shared.bus.docs import ASYNCAPI_CSS, ASYNCAPI_JS
from icdcoder.shared.bus.outbox import Outbox
from icdcoder.shared.bus.stage import LoadedStage
from icdcoder.shared.bus.wire import entry_bytes, guess_note_id, payload_of
from icdcoder.shared.bus.worker import StageWorker
from icdcoder.shared.errors import describe_error
from icdcoder.shared.messages import (
    Candidate,
    CodedNote,
    CodeResult,
    DeadLetter,
    Evidence,
    NoteIn,
    RetrievedNote,
    SegmentedNote,
    SpanCandidates,
    Verdict,
    VerifiedNote,
    VerifierInfo,
)
from icdcoder.shared.settings import Settings
from icdcoder.shared.streams import CANDIDATES, CODES, NOTES, SPANS, VERDICTS, Stage
from tests.fakes import make_span

TEXT = "Patient has type 2 diabetes mellitus and no chest pain."
SECRET_WORD = "diabetes"  # patient text: must never reach a log line
INFO = VerifierInfo(backend="fake")


def _segmented(note: NoteIn) -> SegmentedNote:
    span = make_span("type 2 diabetes mellitus", note.text)
    return SegmentedNote(note_id=note.note_id, text=note.text, spans=[span])


def _retrieved(note: SegmentedNote) -> RetrievedNote:
    cands = [
        Candidate(code="E11.9", description="T2DM", score=0.9, matched="T2DM"),
        Candidate(code="E10.9", description="T1DM", score=0.5, matched="T1DM"),
    ]
    items = [SpanCandidates(span=span, candidates=cands) for span in note.spans]
    return RetrievedNote(note_id=note.note_id, text=note.text, catalogue_version="t", items=items)


def _verified(note: RetrievedNote) -> VerifiedNote:
    verdicts = [
        Verdict(
            span_id=i.span.span_id,
            code="E11.9",
            decision="accept",
            confidence=0.9,
            justification="j",
        )
        for i in note.items
    ]
    return VerifiedNote(
        note_id=note.note_id,
        text=note.text,
        catalogue_version=note.catalogue_version,
        items=note.items,
        verdicts=verdicts,
        verifier=INFO,
    )


def _coded(note: VerifiedNote) -> CodedNote:
    span = note.items[0].span
    evidence = Evidence(span_id=span.span_id, start=span.start, end=span.end, text=span.text)
    code = CodeResult(
        code="E11.9",
        description="T2DM",
        confidence=0.9,
        decision="accept",
        justification="j",
        evidence=[evidence],
    )
    return CodedNote(
        note_id=note.note_id,
        catalogue_version=note.catalogue_version,
        codes=[code],
        excluded=[],
        verifier=note.verifier,
    )


@dataclass(frozen=True)
class Case:
    module: str
    source: str
    sink: str
    make_input: Callable[[str], BaseModel]
    fake: Callable[[Any], BaseModel]
    counts: dict[str, int]


def _note(note_id: str) -> NoteIn:
    return NoteIn(note_id=note_id, text=TEXT)


CASES = [
    Case("icdcoder.services.segmenter.app", NOTES, SPANS, _note, _segmented, {"spans": 1}),
    Case(
        "icdcoder.services.retriever.app",
        SPANS,
        CANDIDATES,
        lambda i: _segmented(_note(i)),
        _retrieved,
        {"spans": 1, "candidates": 2},
    ),
    Case(
        "icdcoder.services.verifier.app",
        CANDIDATES,
        VERDICTS,
        lambda i: _retrieved(_segmented(_note(i))),
        _verified,
        {"candidates": 2, "accepted": 1, "review": 0},
    ),
    Case(
        "icdcoder.services.aggregator.app",
        VERDICTS,
        CODES,
        lambda i: _verified(_retrieved(_segmented(_note(i)))),
        _coded,
        {"codes": 1, "excluded": 0},
    ),
]
IDS = [case.module.split(".")[1] for case in CASES]


@dataclass
class MemoryOutbox(Outbox):
    """Records what a worker commits; ``acked`` makes a commit find its entry already acked."""

    commits: list[tuple[str, str]] = field(default_factory=list)
    letters: list[DeadLetter] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    acked: bool = False

    async def commit(self, stage: Stage, message_id: str, result: str) -> bool:
        if self.acked:
            return False
        self.commits.append((stage.sink, result))
        return True

    async def dead_letter(self, stage: Stage, message_id: str, letter: DeadLetter) -> bool:
        self.letters.append(letter)
        return True

    async def note_failure(self, stage: Stage, message_id: str, error: str) -> None:
        self.failures[message_id] = error

    async def last_failure(self, stage: Stage, message_id: str) -> str | None:
        return self.failures.get(message_id)


@dataclass
class FakeCore:
    fn: Callable[[Any], BaseModel]
    seen: list[BaseModel] = field(default_factory=list)
    error: Exception | None = None

    async def __call__(self, note: Any) -> Any:
        self.seen.append(note)
        if self.error is not None:
            raise self.error
        return self.fn(note)


@pytest.fixture
def logs() -> Iterator[list[MutableMapping[str, Any]]]:
    """Captured log events at every level (whatever an earlier test configured)."""
    old = structlog.get_config()
    capture = structlog.testing.LogCapture()
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, capture],
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        cache_logger_on_first_use=False,
    )
    try:
        yield capture.entries
    finally:
        structlog.configure(**old)


def _worker(case: Case) -> tuple[ModuleType, StageWorker[Any, Any]]:
    module = importlib.import_module(case.module)
    worker: StageWorker[Any, Any] = StageWorker(module.SPEC, Settings(), reclaim=False)
    return module, worker


def _message_lines(logs: list[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [line for line in logs if line["event"] == "message"]


def _assert_no_text(logs: list[MutableMapping[str, Any]]) -> None:
    assert logs
    assert SECRET_WORD not in repr(logs)


@pytest.mark.parametrize("case", CASES, ids=IDS)
async def test_valid_message_is_processed_and_committed_to_the_next_stream(
    case: Case, logs: list[MutableMapping[str, Any]]
) -> None:
    module, worker = _worker(case)
    core, outbox = FakeCore(case.fake), MemoryOutbox()
    worker.bind(LoadedStage(core), outbox)
    message = case.make_input("note-1")

    async with TestRedisBroker(worker.broker) as broker:
        await broker.publish(message.model_dump(mode="json"), stream=case.source)

    assert core.seen == [message]
    assert [sink for sink, _ in outbox.commits] == [case.sink]
    assert worker.spec.output_model.model_validate_json(outbox.commits[0][1]) == case.fake(message)
    assert outbox.letters == []
    (line,) = _message_lines(logs)
    assert line["outcome"] == "committed"
    assert line["note_id"] == "note-1"
    assert line["stage"] == module.SPEC.stage.name
    assert {k: line[k] for k in case.counts} == case.counts
    assert "ms" in line
    _assert_no_text(logs)


MALFORMED = [
    (b"{not json", "json_invalid"),
    ({"note_id": "n-1"}, "missing"),
    ({"note_id": 5, "text": TEXT}, "string_type"),
]


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize(("payload", "reason"), MALFORMED, ids=["bad-json", "missing", "type"])
async def test_malformed_message_is_dead_lettered_with_its_reason_and_the_stage_keeps_serving(
    case: Case, payload: Any, reason: str, logs: list[MutableMapping[str, Any]]
) -> None:
    _, worker = _worker(case)
    core, outbox = FakeCore(case.fake), MemoryOutbox()
    worker.bind(LoadedStage(core), outbox)

    async with TestRedisBroker(worker.broker) as broker:
        await broker.publish(payload, stream=case.source)
        await broker.publish(case.make_input("after").model_dump(mode="json"), stream=case.source)

    (letter,) = outbox.letters
    assert letter.stage == worker.stage.name
    assert letter.stream == case.source
    assert reason in letter.error
    assert letter.attempts == 1
    assert [note.note_id for note in core.seen] == ["after"]  # type: ignore[attr-defined]
    assert len(outbox.commits) == 1
    assert [line["outcome"] for line in _message_lines(logs)] == ["dead_letter", "committed"]
    _assert_no_text(logs)


@pytest.mark.parametrize("case", CASES, ids=IDS)
async def test_core_value_error_dead_letters_without_retry(
    case: Case, logs: list[MutableMapping[str, Any]]
) -> None:
    _, worker = _worker(case)
    core = FakeCore(case.fake, error=ValueError(f"cannot code {SECRET_WORD}"))
    outbox = MemoryOutbox()
    worker.bind(LoadedStage(core), outbox)

    async with TestRedisBroker(worker.broker) as broker:
        await broker.publish(case.make_input("bad").model_dump(mode="json"), stream=case.source)

    (letter,) = outbox.letters
    assert letter.note_id == "bad"
    assert letter.error == f"ValueError: cannot code {SECRET_WORD}"
    assert outbox.commits == [] and outbox.failures == {}
    (line,) = _message_lines(logs)
    assert line["outcome"] == "dead_letter" and line["error"] == "ValueError"
    _assert_no_text(logs)


@pytest.mark.parametrize("case", CASES, ids=IDS)
async def test_other_core_errors_leave_the_message_pending_for_a_retry(
    case: Case, logs: list[MutableMapping[str, Any]]
) -> None:
    _, worker = _worker(case)
    core, outbox = FakeCore(case.fake, error=RuntimeError("backend down")), MemoryOutbox()
    worker.bind(LoadedStage(core), outbox)

    async with TestRedisBroker(worker.broker) as broker:
        await broker.publish(case.make_input("n").model_dump(mode="json"), stream=case.source)

    assert outbox.commits == [] and outbox.letters == []
    assert list(outbox.failures.values()) == ["RuntimeError: backend down"]
    (line,) = _message_lines(logs)
    assert line["outcome"] == "retry"


async def test_a_commit_that_finds_the_entry_already_acked_is_a_duplicate(
    logs: list[MutableMapping[str, Any]],
) -> None:
    _, worker = _worker(CASES[0])
    worker.bind(LoadedStage(FakeCore(_segmented)), MemoryOutbox(acked=True))

    async with TestRedisBroker(worker.broker) as broker:
        await broker.publish(_note("n").model_dump(mode="json"), stream=NOTES)

    (line,) = _message_lines(logs)
    assert line["outcome"] == "duplicate"


async def test_one_note_at_a_time_per_worker() -> None:
    _, worker = _worker(CASES[0])
    running, most = 0, 0

    async def slow(note: NoteIn) -> SegmentedNote:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.01)
        running -= 1
        return _segmented(note)

    outbox = MemoryOutbox()
    worker.bind(LoadedStage(slow), outbox)
    async with TestRedisBroker(worker.broker) as broker:
        await asyncio.gather(
            *(
                broker.publish(_note(f"n{i}").model_dump(mode="json"), stream=NOTES)
                for i in range(5)
            )
        )
    assert len(outbox.commits) == 5
    assert most == 1


def test_validation_errors_are_described_without_their_input() -> None:
    with pytest.raises(ValidationError) as info:
        NoteIn.model_validate({"note_id": "bad id with spaces", "text": SECRET_WORD * 3})
    described = describe_error(info.value)
    assert "note_id" in described and "string_pattern_mismatch" in described
    assert "bad id" not in described and SECRET_WORD not in described


def test_entry_bytes_and_note_id_of_malformed_entries() -> None:
    assert entry_bytes({b"__data__": b'{"note_id": "a"}'}) == b'{"note_id": "a"}'
    assert entry_bytes({b"note_id": b"a"}) == b'{"note_id": "a"}'
    assert guess_note_id('{"note_id": "a-1", "text": 3}') == "a-1"
    assert guess_note_id('{"note_id": "has space"}') is None
    assert guess_note_id("[1, 2]") is None
    assert guess_note_id("{oops") is None
    # no JSON parser runs: deep nesting cannot exhaust the recursion limit
    assert guess_note_id("[" * 100_000 + "]" * 100_000) is None
    assert guess_note_id(b'{"note_id": "b-2", "text": "\xff\xfe"}') == "b-2"


def test_payloads_that_are_not_utf8_are_kept_as_base64() -> None:
    raw = b'{"note_id": "x", "text": "caf\xe9"}'  # Latin-1, not UTF-8
    payload = payload_of(raw)
    assert payload.encoding == "base64" and base64.b64decode(payload.text) == raw
    assert payload_of(b'{"a": 1}').encoding == "utf-8"


async def _get(app: Any, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://worker") as client:
        return await client.get(path)


async def test_health_metrics_and_docs_routes() -> None:
    _, worker = _worker(CASES[0])
    assert (await _get(worker.app, "/healthz/live")).status_code == 204
    # No core loaded, not connected to Redis: not ready.
    assert (await _get(worker.app, "/healthz/ready")).status_code == 503
    assert (await _get(worker.app, "/nowhere")).status_code == 404
    spec = await _get(worker.app, "/asyncapi.json")
    assert spec.status_code == 200 and b"SegmentedNote" in spec.content
    # the page works offline: its viewer is served by the worker, from no CDN
    page = (await _get(worker.app, "/asyncapi")).text
    assert ASYNCAPI_JS in page and ASYNCAPI_CSS in page
    assert "unpkg.com" not in page and "jsdelivr" not in page
    script = await _get(worker.app, ASYNCAPI_JS)
    assert script.status_code == 200 and len(script.content) > 1_000_000
    assert script.headers["content-type"].startswith("text/javascript")
    metrics = await _get(worker.app, "/metrics")
    assert metrics.status_code == 200 and "icdcoder_messages_total" in metrics.text


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_asyncapi_document_names_the_streams_and_models(case: Case) -> None:
    _, worker = _worker(case)
    spec = worker.app.schema.to_specification().to_jsonable()
    addresses = {channel["address"] for channel in spec["channels"].values()}
    assert {case.source, case.sink, "icdcoder:dead-letter"} <= addresses
    schemas = spec["components"]["schemas"]
    assert {worker.spec.input_model.__name__, worker.spec.output_model.__name__} <= set(schemas)
