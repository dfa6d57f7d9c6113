"""The chaos suite: the four real workers against a Redis of their own, broken on purpose.

Scenarios (each against real ``icdcoder worker`` processes; the Redis always has a password):

- ``kill -9`` of each stage while it holds a note, a new worker started in its place;
- Redis shut down and started again mid-run, with an append-only file, while
  ``icdcoder submit --wait`` follows the results;
- the Redis password changed under the workers (``CONFIG SET requirepass`` and every client
  disconnected), the workers restarted with the new one;
- a corpus of malformed messages on every stream;
- Redis restarted without persistence mid-run (the streams are lost);
- SIGTERM while the retriever embeds a 195,000-character note.

Every scenario counts, per note sent: coded once, lost, duplicated, dead-lettered; and the
whole output of every worker and command is scanned for any 5-word sequence of the notes sent
and for the passwords. ``ICDCODER_CHAOS_REPORT=path.md`` writes the table.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as sync_redis

from icdcoder.shared.bus.wire import encode_entry
from icdcoder.shared.messages import NoteIn
from icdcoder.shared.streams import CANDIDATES, SPANS, STAGES
from tests.e2e.chaos_kit import (
    FAST,
    NOTES_DIR,
    REPO,
    RedisServer,
    Row,
    Workers,
    coded_ids,
    dev_notes,
    in_hand,
    leaked_fragments,
    letters,
    pending,
    submit,
    wait,
    write_report,
)

pytestmark = [pytest.mark.slow, pytest.mark.redis]

OLD_PASSWORD = "Old-pw-7f3c1e"
NEW_PASSWORD = "New-pw-9a2b4d"
ROWS: list[Row] = []
EXTRA: dict[str, Any] = {}
SENT: list[NoteIn] = []
OUTPUTS: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def _needs_data() -> None:
    if not NOTES_DIR.is_dir():
        pytest.skip(f"CodiEsp notes not found: {NOTES_DIR}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    redis = RedisServer(tmp_path_factory.mktemp("redis-aof"), OLD_PASSWORD, persistent=True)
    redis.start()
    yield redis
    redis.stop()


@pytest.fixture(scope="module")
def workers(server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workers]:
    running = Workers(
        tmp_path_factory.mktemp("chaos-logs"), {"ICDCODER_BUS__REDIS_URL": server.url, **FAST}
    )
    running.start_all()
    wait(lambda: all(running.ready(stage) for stage in STAGES), "four workers to load")
    yield running
    running.stop_all()


def sent(notes: list[NoteIn]) -> list[NoteIn]:
    SENT.extend(notes)
    return notes


def settle(db: sync_redis.Redis, prefix: str, n: int, timeout_s: float = 300) -> None:
    """All ``n`` notes of ``prefix`` have a result or a dead letter, and nothing is pending."""

    def done() -> bool:
        dead = {d.note_id for d in letters(db)}
        coded = coded_ids(db, prefix)
        ids = {i for i in coded} | {i for i in dead if i and i.startswith(prefix)}
        return len(ids) >= n and pending(db) == 0

    wait(done, f"{n} outcomes for {prefix}", timeout_s)
    time.sleep(1.0)  # a duplicate, if one were coming, would be here by now


def test_kill_9_of_each_stage_mid_run_loses_and_duplicates_nothing(
    server: RedisServer, workers: Workers
) -> None:
    db = server.client()
    notes = sent(dev_notes("kill-", 16))
    submit(db, notes)
    for stage in STAGES:
        # the aggregator holds a note for a few milliseconds: look every 2 ms, not every 100
        held = f"the {stage} to hold a note"
        wait(lambda s=stage: in_hand(db, s), held, timeout_s=120, every_s=0.002)
        victim = workers.live(stage)
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        workers.start(stage)
    settle(db, "kill-", len(notes))
    coded = coded_ids(db, "kill-")
    ROWS.append(Row.of("kill -9 of each stage mid-run", notes, coded, []))
    assert all(coded[n.note_id] == 1 for n in notes)
    assert letters(db) == []


def test_redis_restart_with_persistence_while_submit_waits(
    server: RedisServer, workers: Workers, tmp_path: Path
) -> None:
    db = server.client()
    notes = sent(dev_notes("aof-", 12, start=20))
    folder = tmp_path / "notes"
    folder.mkdir()
    for note in notes:
        (folder / f"{note.note_id}.txt").write_text(note.text)
    follower = subprocess.Popen(
        [sys.executable, "-m", "icdcoder", "submit", "--wait", "--timeout", "400"]
        + [str(p) for p in sorted(folder.glob("*.txt"))],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "ICDCODER_BUS__REDIS_URL": server.url},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait(lambda: len(coded_ids(db, "aof-")) >= 3, "the first results", timeout_s=120)
    down = time.monotonic()
    server.restart()
    EXTRA["aof_restart_seconds"] = round(time.monotonic() - down, 1)
    out, err = follower.communicate(timeout=420)
    OUTPUTS.append(err)  # stdout is the results themselves (evidence text by design), not logs
    db = server.client()
    settle(db, "aof-", len(notes))
    coded = coded_ids(db, "aof-")
    printed = [json.loads(line)["note_id"] for line in out.splitlines()]
    ROWS.append(
        Row.of("Redis restart, append-only file", notes, coded, [], "submit --wait printed all")
    )
    assert follower.returncode == 0, err
    assert sorted(printed) == sorted(n.note_id for n in notes)
    assert all(coded[n.note_id] == 1 for n in notes)


def _malformed(stage: str, valid: dict[str, Any]) -> list[tuple[str, bytes | str, str]]:
    """(class, payload, words the dead letter's reason must contain) for one stream."""
    note_id = valid["note_id"]
    big = json.dumps({"note_id": "big-1", "text": "x" * 5_000_000})
    cases: list[tuple[str, bytes | str, str]] = [
        ("bad json", "{not json", "json_invalid"),
        ("nested arrays", "[" * 100_000 + "]" * 100_000, "invalid"),
        ("empty payload", "", "json_invalid"),
        ("empty object", "{}", "missing"),
        ("json array", "[1, 2]", "model_type"),
        ("json string", '"a note"', "model_type"),
        ("json null", "null", "model_type"),
        ("json number", "42", "model_type"),
        ("wrong types", json.dumps({**valid, "note_id": 7}), "string_type"),
        ("missing field", json.dumps({"note_id": note_id}), "missing"),
        ("unknown field", json.dumps({**valid, "surprise": 1}), "extra_forbidden"),
        ("id with spaces", json.dumps({**valid, "note_id": "has spaces"}), "pattern"),
        ("id too long", json.dumps({**valid, "note_id": "a" * 300}), "pattern"),
        ("empty id", json.dumps({**valid, "note_id": ""}), "pattern"),
        ("non-ascii id", json.dumps({**valid, "note_id": "nöte-1"}), "pattern"),
        ("not utf-8", b'{"note_id": "x", "text": "caf\xe9"}', "not UTF-8"),
        ("raw NUL byte", b'{"note_id": "n\x00", "text": "a"}', "invalid"),
        ("corrupt compressed", b"x\x9c\x00\x01garbage", "neither JSON"),
    ]
    if stage == "segmenter":
        cases += [
            ("5 MB note", big, "over the limit"),
            ("NUL escapes", json.dumps({"note_id": "nul-1", "text": "a\u0000b"}), "NUL"),
            ("blank text", json.dumps({"note_id": "blank-1", "text": "   \n "}), "empty"),
        ]
    else:
        cases += [("5 MB garbage", "x" * 5_000_000, "neither JSON")]
    if stage == "retriever":
        span = {"span_id": "s1", "start": 0, "end": 4, "text": "abcd", "sentence_start": 0,
                "sentence_end": 4}  # fmt: skip
        cases += [
            ("span outside text", json.dumps({**valid, "spans": [span]}), "slice"),
        ]
    if stage == "verifier":
        bad = dict(valid)
        bad["items"] = [
            {**item, "candidates": [{**c, "code": "ZZZ.99"} for c in item["candidates"]]}
            for item in valid["items"]
        ]
        cases += [("unknown codes", json.dumps(bad), "not in the catalogue")]
    if stage == "aggregator":
        stray = dict(valid)
        stray["verdicts"] = [{**v, "span_id": "s9999"} for v in valid["verdicts"]]
        cases += [("unknown span id", json.dumps(stray), "lacks")]
        foreign = dict(valid)
        foreign["verdicts"] = [{**v, "code": "A00.0"} for v in valid["verdicts"]]
        cases += [("verdict not a candidate", json.dumps(foreign), "not a candidate")]
    return cases


def test_malformed_messages_on_every_stream_are_dead_lettered_with_their_reason(
    server: RedisServer, workers: Workers
) -> None:
    db = server.client()
    from icdcoder.bootstrap import build_pipeline
    from icdcoder.shared.settings import Settings

    pipeline = build_pipeline(Settings(), progress=None)
    note = dev_notes("valid-", 1)[0]
    segmented = pipeline.segmenter.segment(note)
    retrieved = pipeline.retriever.retrieve(segmented)
    import asyncio

    verified = asyncio.run(pipeline.verifier.verify(retrieved))
    valids = {
        "segmenter": json.loads(note.model_dump_json()),
        "retriever": json.loads(segmented.model_dump_json()),
        "verifier": json.loads(retrieved.model_dump_json()),
        "aggregator": json.loads(verified.model_dump_json()),
    }
    before = len(letters(db))
    expected: list[tuple[str, str, str]] = []
    for stage, valid in valids.items():
        for name, payload, reason in _malformed(stage, valid):
            db.xadd(STAGES[stage].source, {"__data__": payload})
            expected.append((stage, name, reason))
    started = time.monotonic()
    wait(lambda: len(letters(db)) >= before + len(expected), "every dead letter", timeout_s=120)
    EXTRA["malformed_seconds_to_dead_letter_all"] = round(time.monotonic() - started, 1)
    EXTRA["malformed_classes"] = len(expected)
    got = letters(db)[before:]
    by_stage: dict[str, list[str]] = {}
    for letter in got:
        by_stage.setdefault(letter.stage, []).append(letter.error)
    problems = []
    for stage, name, reason in expected:
        reasons = by_stage.get(stage, [])
        match = next((r for r in reasons if reason.lower() in r.lower()), None)
        if match is None:
            problems.append(f"{stage}/{name}: no letter says {reason!r}")
        else:
            reasons.remove(match)
    assert not problems, problems
    wait(lambda: pending(db) == 0, "nothing pending", timeout_s=30)
    status = subprocess.run(
        [sys.executable, "-m", "icdcoder", "status", "--json"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "ICDCODER_BUS__REDIS_URL": server.url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert all(s["pending"] == 0 for s in json.loads(status.stdout)["stages"])
    ROWS.append(
        Row(
            f"{len(expected)} malformed messages on 4 streams",
            sent=len(expected),
            coded_once=0,
            lost=0,
            duplicated=0,
            dead_lettered=len(got),
            note="every one dead-lettered with its reason",
        )
    )
    # the stages still serve
    after = sent(dev_notes("after-bad-", 2, start=40))
    submit(db, after)
    settle(db, "after-bad-", 2)
    assert all(coded_ids(db, "after-bad-")[n.note_id] == 1 for n in after)


def test_a_password_change_then_workers_restarted_with_it(
    server: RedisServer, workers: Workers
) -> None:
    db = server.client()
    notes = sent(dev_notes("pw-", 8, start=50))
    submit(db, notes)
    wait(lambda: len(coded_ids(db, "pw-")) >= 2, "the first results", timeout_s=120)
    db.config_set("requirepass", NEW_PASSWORD)
    db = server.client(NEW_PASSWORD)
    db.client_kill_filter(_type="normal", skipme=True)
    time.sleep(3.0)  # the workers fail to authenticate and log it
    workers.stop_all(timeout_s=60)
    server.password = NEW_PASSWORD
    workers.env["ICDCODER_BUS__REDIS_URL"] = server.url
    workers.start_all()
    wait(lambda: all(workers.ready(stage) for stage in STAGES), "workers with the new password")
    settle(db, "pw-", len(notes))
    coded = coded_ids(db, "pw-")
    ROWS.append(Row.of("Redis password changed, workers restarted", notes, coded, []))
    assert all(coded[n.note_id] == 1 for n in notes)


def test_redis_restart_without_persistence_loses_only_what_was_in_flight(
    tmp_path: Path,
) -> None:
    redis = RedisServer(tmp_path / "redis", OLD_PASSWORD, persistent=False)
    redis.start()
    running = Workers(tmp_path, {"ICDCODER_BUS__REDIS_URL": redis.url, **FAST})
    try:
        running.start_all()
        wait(lambda: all(running.ready(stage) for stage in STAGES), "four workers to load")
        db = redis.client()
        first = sent(dev_notes("volatile-", 10, start=60))
        submit(db, first)
        wait(lambda: len(coded_ids(db, "volatile-")) >= 3, "the first results", timeout_s=120)
        before_restart = coded_ids(db, "volatile-")
        redis.restart()
        db = redis.client()
        # every worker recreates its group and goes on
        wait(lambda: all(_group_exists(db, s) for s in STAGES), "groups recreated", 60)
        second = sent(dev_notes("after-loss-", 6, start=80))
        submit(db, second)
        settle(db, "after-loss-", len(second))
        after = coded_ids(db, "after-loss-")
        assert all(after[n.note_id] == 1 for n in second)
        assert all(p.poll() is None for _, p, _ in running.procs)  # nobody exited
        lost_logged = "bus_streams_lost" in running.output()
        assert lost_logged
        coded_first = before_restart  # results before the restart went with the streams too
        ROWS.append(
            Row.of(
                "Redis restart without persistence (first batch)",
                first,
                coded_first,
                [],
                "streams lost with Redis; the loss is logged (bus_streams_lost)",
            )
        )
        ROWS.append(Row.of("... notes sent after that restart", second, after, []))
    finally:
        running.stop_all()
        OUTPUTS.append(running.output())
        redis.stop()


def _group_exists(db: sync_redis.Redis, stage: str) -> bool:
    try:
        groups = db.xinfo_groups(STAGES[stage].source)
    except sync_redis.ResponseError:
        return False
    return any(g["name"].decode() == STAGES[stage].group for g in groups)


def test_sigterm_while_the_retriever_embeds_a_long_note(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "redis", OLD_PASSWORD, persistent=True)
    redis.start()
    running = Workers(tmp_path, {"ICDCODER_BUS__REDIS_URL": redis.url})
    try:
        retriever = running.start("retriever")
        wait(lambda: running.ready("retriever"), "the retriever to load")
        db = redis.client()
        text = ""
        for path in sorted(NOTES_DIR.glob("*.txt")):
            if len(text) > 190_000:
                break
            text += path.read_text("utf-8") + "\n\n"
        from icdcoder.services.segmenter.core import Segmenter

        long_note = sent([NoteIn(note_id="long-1", text=text)])[0]
        segmented = Segmenter().segment(long_note)
        db.xadd(SPANS, encode_entry(segmented))
        wait(lambda: in_hand(db, "retriever"), "the retriever to take the long note", 60)
        time.sleep(2.0)  # well into embedding its spans
        stopped = time.monotonic()
        retriever.send_signal(signal.SIGTERM)
        retriever.wait(120)
        seconds = round(time.monotonic() - stopped, 1)
        EXTRA["sigterm_long_note_stop_seconds"] = seconds
        EXTRA["long_note_characters"] = len(text)
        EXTRA["long_note_spans"] = len(segmented.spans)
        # Not lost either way: finished within the grace period and passed on once (the int8
        # encoder embeds such a note in seconds), or cancelled and still pending for another
        # replica to reclaim.
        finished = db.xlen(CANDIDATES)
        pending = in_hand(db, "retriever")
        assert (finished, pending) in ((1, False), (0, True))
        assert seconds < 45, f"stopped after {seconds} s"
        outcome = "finished and passed on" if finished else "stays pending for another replica"
        ROWS.append(
            Row(
                "SIGTERM during a 195k-character note",
                sent=1,
                coded_once=finished,
                lost=0,
                duplicated=0,
                dead_lettered=0,
                note=f"stopped in {seconds} s; the note {outcome}",
            )
        )
    finally:
        running.stop_all()
        OUTPUTS.append(running.output())
        redis.stop()


def test_no_note_text_and_no_password_in_any_output(workers: Workers) -> None:
    """Runs last: everything every worker and command printed, scanned."""
    workers.stop_all()
    OUTPUTS.append(workers.output())
    everything = "\n".join(OUTPUTS)
    fragments = leaked_fragments(everything, SENT)
    EXTRA["log_bytes_scanned"] = len(everything)
    EXTRA["note_fragments_found"] = len(fragments)
    secrets = [p for p in (OLD_PASSWORD, NEW_PASSWORD) if p in everything]
    EXTRA["secrets_found"] = len(secrets)
    report = os.environ.get("ICDCODER_CHAOS_REPORT")
    if report:
        write_report(ROWS, EXTRA, Path(report))
    assert fragments == [], fragments[:5]
    assert secrets == []
