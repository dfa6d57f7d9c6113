"""``icdcoder submit`` / ``status`` and workers as processes (fake cores) on a real Redis.

Worker processes run :func:`fake_worker_main` (the stage app of ``icdcoder worker`` with a fake
core), so these tests need neither the models nor the index. The same scenarios with the real
cores are in tests/e2e/test_workers.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import redis as sync_redis

from icdcoder.shared.bus.serve import serve_worker
from icdcoder.shared.bus.stage import LoadedStage, StageSpec
from icdcoder.shared.bus.wire import encode_entry, entry_bytes
from icdcoder.shared.bus.worker import StageWorker
from icdcoder.shared.logging import configure_logging
from icdcoder.shared.messages import CodedNote, NoteIn, SegmentedNote
from icdcoder.shared.settings import HttpConfig, Settings
from icdcoder.shared.streams import CODES, NOTES, SPANS, STAGES
from tests.conftest import flushed_redis
from tests.integration.test_bus_redis import FAKES, TEST_URL

pytestmark = pytest.mark.redis

REPO = Path(__file__).resolve().parents[2]


def fake_worker_main(stage: str, delay_s: float = 0.0) -> None:
    """A worker process for ``stage`` with a fake core that takes ``delay_s`` per note."""
    input_model, output_model, fake = FAKES[stage]

    async def process(note: Any) -> Any:
        await asyncio.sleep(delay_s)
        return await fake(note)

    spec: StageSpec[Any, Any] = StageSpec(
        STAGES[stage], input_model, output_model, lambda _: LoadedStage(process), lambda _: {}
    )
    configure_logging("INFO", json=True, stream=sys.stdout)
    asyncio.run(serve_worker(StageWorker(spec, Settings()), HttpConfig(port=0)))


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"ICDCODER_BUS__REDIS_URL": TEST_URL, "PYTHONPATH": str(REPO)}, **extra)
    return env


@pytest.fixture
def db() -> Iterator[sync_redis.Redis]:
    yield from flushed_redis(TEST_URL)


@pytest.fixture
def spawn() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []

    def start(stage: str, delay_s: float = 0.0, **env: str) -> subprocess.Popen[str]:
        code = (
            "from tests.integration.test_bus_cli import fake_worker_main; "
            f"fake_worker_main({stage!r}, {delay_s!r})"
        )
        proc = subprocess.Popen(
            [sys.executable, "-c", code],
            cwd=REPO,
            env=_env(ICDCODER_BUS__CONSUMER_NAME=f"{stage}-{len(started)}", **env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def cli(
    *args: str, stdin: str | bytes | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "icdcoder", *args],
        cwd=REPO,
        env=_env(),
        input=stdin.decode() if isinstance(stdin, bytes) else stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def wait_for(check: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


def payloads(db: sync_redis.Redis, stream: str) -> list[str]:
    found = cast("list[tuple[bytes, dict[bytes, bytes]]]", db.xrange(stream))
    return [entry_bytes(fields).decode() for _, fields in found]


def pending(db: sync_redis.Redis, stage: str) -> int:
    return int(db.xpending(STAGES[stage].source, STAGES[stage].group)["pending"])


# --- submit input errors --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "no such file"),
        (b"  \n", "the note is empty"),
        (b"caf\xe9", "not UTF-8 text"),
    ],
    ids=["missing", "empty", "non-utf8"],
)
def test_submit_rejects_bad_files_with_one_line_and_publishes_nothing(
    db: sync_redis.Redis, tmp_path: Path, content: bytes | None, expected: str
) -> None:
    good = tmp_path / "good.txt"
    good.write_text("Hypertension.")
    bad = tmp_path / "bad.txt"
    if content is not None:
        bad.write_bytes(content)

    result = cli("submit", str(good), str(bad))

    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and expected in result.stderr
    assert str(bad) in result.stderr
    assert db.exists(NOTES) == 0


def test_submit_id_needs_exactly_one_file(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("x")
    (tmp_path / "b.txt").write_text("y")
    result = cli("submit", "--id", "n1", str(tmp_path / "a.txt"), str(tmp_path / "b.txt"))
    assert result.returncode == 2 and "--id" in result.stderr


def test_submit_publishes_one_note_per_file_named_by_stem_or_id(
    db: sync_redis.Redis, tmp_path: Path
) -> None:
    (tmp_path / "adm-01.txt").write_text("Hypertension.")
    first = cli("submit", str(tmp_path / "adm-01.txt"))
    second = cli("submit", "-", "--id", "from-stdin", stdin="Asthma.")

    assert first.returncode == 0 and second.returncode == 0
    lines = [json.loads(line) for line in (first.stdout + second.stdout).splitlines()]
    assert [line["note_id"] for line in lines] == ["adm-01", "from-stdin"]
    notes = [NoteIn.model_validate_json(p) for p in payloads(db, NOTES)]
    assert notes == [
        NoteIn(note_id="adm-01", text="Hypertension."),
        NoteIn(note_id="from-stdin", text="Asthma."),
    ]


def test_status_reports_lengths_as_a_table_and_as_json(
    db: sync_redis.Redis, tmp_path: Path
) -> None:
    for name in ("a", "b"):
        (tmp_path / f"{name}.txt").write_text("Asthma.")
    assert cli("submit", str(tmp_path / "a.txt"), str(tmp_path / "b.txt")).returncode == 0

    table = cli("status")
    as_json = cli("status", "--json")

    assert table.returncode == 0
    header, segmenter_row = table.stdout.splitlines()[:2]
    assert header.split()[:3] == ["STAGE", "STREAM", "LENGTH"]
    assert segmenter_row.split()[:5] == ["segmenter", NOTES, "2", "2", "0"]
    status = json.loads(as_json.stdout)
    assert status["stages"][0]["length"] == 2 and status["codes"] == 0


def test_status_without_redis_fails_with_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "icdcoder", "status"],
        cwd=REPO,
        env=_env(ICDCODER_BUS__REDIS_URL="redis://127.0.0.1:1/0"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("icdcoder: error: Redis:") and result.stderr.count("\n") == 1


# --- worker processes -----------------------------------------------------------------------


def test_submit_wait_prints_each_result_from_four_worker_processes(
    db: sync_redis.Redis, tmp_path: Path, spawn: Callable[..., subprocess.Popen[str]]
) -> None:
    files = []
    for i in range(3):
        path = tmp_path / f"note-{i}.txt"
        path.write_text(f"Note {i}: hypertension.")
        files.append(str(path))
    for stage in STAGES:
        spawn(stage)

    result = cli("submit", "--wait", "--timeout", "60", *files)

    assert result.returncode == 0, result.stderr
    coded = [CodedNote.model_validate_json(line) for line in result.stdout.splitlines()]
    assert sorted(c.note_id for c in coded) == ["note-0", "note-1", "note-2"]


def test_submit_wait_times_out_with_the_missing_notes(db: sync_redis.Redis, tmp_path: Path) -> None:
    (tmp_path / "lonely.txt").write_text("No worker runs.")
    result = cli("submit", "--wait", "--timeout", "0.5", str(tmp_path / "lonely.txt"))
    assert result.returncode == 1
    assert "no result within 0.5s for 1 note(s): lonely" in result.stderr


def _submit_direct(db: sync_redis.Redis, note_ids: list[str]) -> None:
    db.xgroup_create(NOTES, "segmenter", id="0", mkstream=True)
    for note_id in note_ids:
        db.xadd(NOTES, encode_entry(NoteIn(note_id=note_id, text="Asthma.")))


def test_sigterm_lets_the_message_in_hand_finish_and_ack(
    db: sync_redis.Redis, spawn: Callable[..., subprocess.Popen[str]]
) -> None:
    _submit_direct(db, ["first", "second", "third"])
    worker = spawn("segmenter", delay_s=1.0)
    wait_for(lambda: pending(db, "segmenter") == 1)  # "first" is in hand

    worker.send_signal(signal.SIGTERM)
    output, _ = worker.communicate(timeout=30)

    # uvicorn re-raises the signal once stopped: the conventional exit of a SIGTERMed server
    assert worker.returncode == -signal.SIGTERM, output
    assert [SegmentedNote.model_validate_json(p).note_id for p in payloads(db, SPANS)] == ["first"]
    assert pending(db, "segmenter") == 0
    assert db.xlen(NOTES) == 2  # not started: left for the next worker
    events = [json.loads(line)["event"] for line in output.splitlines() if line.startswith("{")]
    assert events.index("worker_stopping") < events.index("worker_stopped")


def test_kill_9_mid_run_then_a_new_worker_gives_every_note_exactly_one_result(
    db: sync_redis.Redis, spawn: Callable[..., subprocess.Popen[str]]
) -> None:
    note_ids = [f"n{i:02d}" for i in range(12)]
    _submit_direct(db, note_ids)
    fast = {"ICDCODER_BUS__CLAIM_IDLE_MS": "500", "ICDCODER_BUS__CLAIM_INTERVAL_S": "0.1"}
    for stage in ("segmenter", "verifier", "aggregator"):
        spawn(stage, **fast)
    victim = spawn("retriever", delay_s=0.2, **fast)
    wait_for(lambda: db.xlen(CODES) >= 2 and pending(db, "retriever") == 1)

    victim.send_signal(signal.SIGKILL)  # dies holding a message
    victim.wait(10)
    assert pending(db, "retriever") == 1
    spawn("retriever", **fast)
    wait_for(lambda: db.xlen(CODES) >= len(note_ids), timeout_s=60)
    time.sleep(1.0)  # a second result, if any were coming, would arrive now

    results = [CodedNote.model_validate_json(p).note_id for p in payloads(db, CODES)]
    assert sorted(results) == note_ids
    assert db.xlen("icdcoder:dead-letter") == 0
    assert all(pending(db, stage) == 0 for stage in STAGES)


def test_a_worker_whose_group_is_deleted_recreates_it_and_goes_on(
    db: sync_redis.Redis, spawn: Callable[..., subprocess.Popen[str]]
) -> None:
    _submit_direct(db, ["one"])
    worker = spawn("segmenter", ICDCODER_BUS__CLAIM_INTERVAL_S="0.2")
    wait_for(lambda: db.xlen(SPANS) == 1)

    db.delete(NOTES)  # e.g. Redis restarted without persistence: the group is gone
    wait_for(lambda: _has_group(db, NOTES, "segmenter"))
    db.xadd(NOTES, encode_entry(NoteIn(note_id="two", text="Asthma.")))
    wait_for(lambda: db.xlen(SPANS) == 2)

    assert worker.poll() is None  # still running
    worker.send_signal(signal.SIGTERM)
    output, _ = worker.communicate(timeout=30)
    events = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    lost = [e for e in events if e["event"] == "bus_streams_lost"]
    assert lost and f"{NOTES}:segmenter" in lost[0]["recreated"]
    assert lost[0]["level"] == "error"


def _has_group(db: sync_redis.Redis, stream: str, group: str) -> bool:
    try:
        groups = db.xinfo_groups(stream)
    except sync_redis.ResponseError:
        return False
    return any(g["name"].decode() == group for g in groups)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--timeout", "nan"], "--timeout: must be a finite number above 0"),
        (["--timeout", "inf"], "--timeout: must be a finite number above 0"),
        (["--timeout", "-5"], "--timeout: must be a finite number above 0"),
        (["--id", ""], "invalid note id ''"),
        (["--id", "has space"], "invalid note id 'has space'"),
    ],
    ids=["nan", "inf", "negative", "empty-id", "bad-id"],
)
def test_submit_bad_options_are_one_line_errors(
    db: sync_redis.Redis, tmp_path: Path, args: list[str], expected: str
) -> None:
    (tmp_path / "n.txt").write_text("Asthma.")
    result = cli("submit", "--wait", *args, str(tmp_path / "n.txt"))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and expected in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert db.exists(NOTES) == 0


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("foo://bar", "must start with redis://"),
        ("redis://:s3cret-pw@localhost:abc/0", "port is not a number"),
        ("redis://:s3cret-pw@localhost:6379/zero", "database must be a number"),
    ],
)
def test_a_malformed_redis_url_is_one_line_naming_the_variable_not_the_password(
    url: str, expected: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "icdcoder", "status"],
        cwd=REPO,
        env=_env(ICDCODER_BUS__REDIS_URL=url),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert "ICDCODER_BUS__REDIS_URL" in result.stderr and expected in result.stderr
    assert "s3cret-pw" not in result.stderr
