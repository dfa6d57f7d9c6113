"""The four stages as worker processes (``icdcoder worker STAGE``) on a real Redis, real cores.

50 CodiEsp dev notes through the bus give the results the in-process pipeline gives; a worker
killed with SIGKILL mid-run loses nothing and duplicates nothing; malformed messages on each
stream are dead-lettered while the stages keep serving; SIGTERM finishes the note in hand.
Redis database 15 (``ICDCODER_E2E_REDIS_URL``) is flushed before and after.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import redis as sync_redis
from redis.typing import EncodableT, FieldT

from icdcoder.shared.bus.wire import encode_entry, entry_bytes
from icdcoder.shared.messages import CodedNote, DeadLetter, NoteIn
from icdcoder.shared.streams import CANDIDATES, CODES, DEAD_LETTER, NOTES, STAGES
from tests.conftest import flushed_redis

pytestmark = [pytest.mark.slow, pytest.mark.redis]

REPO = Path(__file__).resolve().parents[2]
#: ``icdcoder worker``: the bus subcommands as the ``icdcoder`` CLI runs them.
WORKER = [sys.executable, "-m", "icdcoder", "worker"]
NOTES_DIR = REPO.parent / "shared/data/codiesp/dev/text_files_en"
URL = os.environ.get("ICDCODER_E2E_REDIS_URL", "redis://127.0.0.1:6379/15")
RESULTS_TIMEOUT_S = 600.0
#: A replacement worker reclaims what a dead one held once it has been idle this long.
FAST_RECLAIM = {"ICDCODER_BUS__CLAIM_IDLE_MS": "3000", "ICDCODER_BUS__CLAIM_INTERVAL_S": "0.5"}


def notes(prefix: str, n: int = 50) -> list[NoteIn]:
    if not NOTES_DIR.is_dir():
        pytest.skip(f"CodiEsp notes not found: {NOTES_DIR}")
    paths = sorted(NOTES_DIR.glob("*.txt"))[:n]
    return [NoteIn(note_id=f"{prefix}{p.stem}", text=p.read_text("utf-8")) for p in paths]


class Workers:
    """Worker processes by stage, each logging JSON lines to its own file."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.procs: dict[str, list[subprocess.Popen[bytes]]] = {s: [] for s in STAGES}
        self.log_paths: dict[int, Path] = {}
        self.stopped: set[int] = set()  # pids a test killed or stopped on purpose

    def start(self, stage: str, **env: str) -> subprocess.Popen[bytes]:
        name = f"{stage}-{len(self.procs[stage])}"
        path = self.logs / f"{name}.log"
        with path.open("wb") as log:
            proc = subprocess.Popen(
                [*WORKER, stage, "--http-port", "0"],
                cwd=REPO,
                env={
                    **os.environ,
                    "ICDCODER_BUS__REDIS_URL": URL,
                    "ICDCODER_BUS__CONSUMER_NAME": name,
                    "PYTHONPATH": str(REPO),
                    **env,
                },
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.procs[stage].append(proc)
        self.log_paths[proc.pid] = path
        return proc

    def signal(self, proc: subprocess.Popen[bytes], sig: int) -> None:
        self.stopped.add(proc.pid)
        proc.send_signal(sig)

    def check_alive(self) -> None:
        """Fail at once, with its log, if a worker died that no test stopped."""
        for proc in (p for ps in self.procs.values() for p in ps):
            if proc.poll() is not None and proc.pid not in self.stopped:
                tail = self.log_paths[proc.pid].read_text()[-3000:]
                raise AssertionError(f"worker {proc.args!r} exited {proc.returncode}:\n{tail}")

    def live(self, stage: str) -> subprocess.Popen[bytes]:
        return next(p for p in reversed(self.procs[stage]) if p.poll() is None)

    def log(self, proc: subprocess.Popen[bytes]) -> list[dict[str, Any]]:
        lines = self.log_paths[proc.pid].read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def messages(self, stage: str) -> list[dict[str, Any]]:
        """The canonical per-message log lines of every worker of ``stage``."""
        return [
            line for p in self.procs[stage] for line in self.log(p) if line["event"] == "message"
        ]

    def stop_all(self) -> None:
        live = [p for ps in self.procs.values() for p in ps if p.poll() is None]
        for proc in live:
            proc.send_signal(signal.SIGTERM)
        for proc in live:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


@pytest.fixture(scope="module")
def db() -> Iterator[sync_redis.Redis]:
    yield from flushed_redis(URL)


@pytest.fixture(scope="module")
def workers(db: sync_redis.Redis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workers]:
    running = Workers(tmp_path_factory.mktemp("worker-logs"))
    for stage in STAGES:
        running.start(stage)
    yield running
    running.stop_all()


@pytest.fixture(scope="module")
def in_process() -> Callable[[NoteIn], CodedNote]:
    """The in-process pipeline, with the settings the workers read (the environment)."""
    from icdcoder.bootstrap import build_pipeline

    pipeline = build_pipeline(progress=None)

    def code(note: NoteIn) -> CodedNote:
        coded, _ = asyncio.run(pipeline.code_note(note))
        return coded

    return code


def submit(db: sync_redis.Redis, batch: list[NoteIn]) -> None:
    for note in batch:
        db.xadd(NOTES, encode_entry(note))


def xadd(db: sync_redis.Redis, stream: str, fields: dict[str, str]) -> None:
    db.xadd(stream, cast("dict[FieldT, EncodableT]", fields))


def payloads(db: sync_redis.Redis, stream: str) -> list[str]:
    found = cast("list[tuple[bytes, dict[bytes, bytes]]]", db.xrange(stream))
    return [entry_bytes(fields).decode() for _, fields in found]


def results(db: sync_redis.Redis, prefix: str) -> list[CodedNote]:
    coded = [CodedNote.model_validate_json(p) for p in payloads(db, CODES)]
    return [c for c in coded if c.note_id.startswith(prefix)]


def pending(db: sync_redis.Redis, stage: str) -> int:
    return int(db.xpending(STAGES[stage].source, STAGES[stage].group)["pending"])


def wait_for(
    check: Callable[[], bool],
    what: str,
    workers: Workers,
    timeout_s: float = RESULTS_TIMEOUT_S,
) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        workers.check_alive()
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def exactly_once(db: sync_redis.Redis, workers: Workers, prefix: str, batch: list[NoteIn]) -> None:
    """Every note of ``batch`` has one result: no more, no fewer."""
    wait_for(lambda: len(results(db, prefix)) >= len(batch), f"{len(batch)} results", workers)
    time.sleep(2.0)  # a duplicate, if one were coming, would be here by now
    counts = Counter(c.note_id for c in results(db, prefix))
    assert counts == Counter(n.note_id for n in batch)


def comparable(coded: CodedNote) -> dict[str, Any]:
    return {
        "codes": [
            (c.code, c.decision, [(e.start, e.end) for e in c.evidence]) for c in coded.codes
        ],
        "excluded": [(x.code, x.start, x.end, x.reason) for x in coded.excluded],
    }


def test_fifty_notes_through_four_worker_processes_equal_the_in_process_pipeline(
    db: sync_redis.Redis, workers: Workers, in_process: Callable[[NoteIn], CodedNote]
) -> None:
    batch = notes("bus-")
    submit(db, batch)

    exactly_once(db, workers, "bus-", batch)

    by_id = {c.note_id: c for c in results(db, "bus-")}
    for note in batch:
        assert comparable(by_id[note.note_id]) == comparable(in_process(note)), note.note_id
    assert db.xlen(DEAD_LETTER) == 0
    lines = workers.messages("aggregator")
    assert {line["note_id"] for line in lines} >= {n.note_id for n in batch}
    assert all("codes" in line and "ms" in line for line in lines)
    texts = [n.text[:40] for n in batch]
    for stage in STAGES:
        logged = json.dumps(workers.messages(stage))
        assert not any(text in logged for text in texts), f"{stage} logged note text"


def test_kill_9_a_retriever_mid_run_then_a_new_one_gives_every_note_exactly_one_result(
    db: sync_redis.Redis, workers: Workers
) -> None:
    batch = notes("kill-")
    retrieved_before = db.xlen(CANDIDATES)
    submit(db, batch)
    # two cheap reads a poll: parsing every result each time let a fast retriever finish the
    # run between two polls
    wait_for(
        lambda: db.xlen(CANDIDATES) - retrieved_before >= 3 and pending(db, "retriever") == 1,
        "a retriever busy mid-run",
        workers,
    )

    victim = workers.live("retriever")
    workers.signal(victim, signal.SIGKILL)
    victim.wait(30)
    held = pending(db, "retriever")
    replacement = workers.start("retriever", **FAST_RECLAIM)

    exactly_once(db, workers, "kill-", batch)
    assert db.xlen(DEAD_LETTER) == 0
    assert all(pending(db, stage) == 0 for stage in STAGES)
    if held:  # the note the victim held was reclaimed and processed on a second delivery
        attempts = [
            line["attempt"] for line in workers.log(replacement) if line["event"] == "message"
        ]
        assert 2 in attempts


MALFORMED = [
    ({"__data__": "{not json"}, "json_invalid"),
    ({"__data__": '{"note_id": "malformed-1"}'}, "missing"),
    ({"__data__": '{"note_id": ["x"], "text": 1}'}, "string_type"),
]


def test_malformed_messages_on_every_stream_are_dead_lettered_and_the_stages_keep_serving(
    db: sync_redis.Redis, workers: Workers
) -> None:
    before = db.xlen(DEAD_LETTER)
    for stage in STAGES.values():
        for fields, _ in MALFORMED:
            xadd(db, stage.source, fields)
    wait_for(lambda: db.xlen(DEAD_LETTER) >= before + 4 * len(MALFORMED), "dead letters", workers)

    letters = [DeadLetter.model_validate_json(p) for p in payloads(db, DEAD_LETTER)][before:]
    for stage in STAGES.values():
        mine = [letter for letter in letters if letter.stage == stage.name]
        assert [letter.stream for letter in mine] == [stage.source] * len(MALFORMED)
        for letter, (_, reason) in zip(mine, MALFORMED, strict=True):
            assert reason in letter.error, (stage.name, letter.error)
            assert letter.attempts == 1
    batch = notes("after-malformed-", n=3)
    submit(db, batch)
    exactly_once(db, workers, "after-malformed-", batch)


def test_sigterm_lets_the_note_in_hand_finish_and_nothing_is_lost(
    db: sync_redis.Redis, workers: Workers
) -> None:
    batch = notes("term-")
    retrieved_before = db.xlen(CANDIDATES)
    submit(db, batch)
    # two cheap reads a poll, as the kill -9 test does: parsing every result each poll let a
    # fast retriever finish the run between two polls, and the wait then never ended
    wait_for(
        lambda: db.xlen(CANDIDATES) - retrieved_before >= 3 and pending(db, "retriever") == 1,
        "a retriever busy mid-run",
        workers,
    )

    stopping = workers.live("retriever")
    workers.signal(stopping, signal.SIGTERM)
    assert stopping.wait(60) == -signal.SIGTERM  # uvicorn re-raises the signal once stopped
    assert pending(db, "retriever") == 0  # the note in hand was finished and acked
    events = [line["event"] for line in workers.log(stopping)]
    assert events.index("worker_stopping") < events.index("worker_stopped")
    workers.start("retriever")

    exactly_once(db, workers, "term-", batch)
