"""Backfilling the 250 CodiEsp dev notes, killed with SIGKILL about half way, then resumed:
exactly 250 results and no duplicate, on PostgreSQL and on SQLite, in process and over the bus
with a worker killed mid-run."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from icdcoder.shared.settings import StoreConfig
from icdcoder.shared.store.engine import make_engine
from icdcoder.shared.store.migrate import open_store, upgrade
from tests.e2e.chaos_kit import FAST, RedisServer, Workers, wait
from tests.store_fixtures import postgres_database

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
DEV = REPO.parent / "shared/data/codiesp/dev/text_files_en"
NOTES = 250
SUMMARY = re.compile(r"coded (\d[\d,]*), skipped (\d[\d,]*)")


@pytest.fixture(params=["postgresql", "sqlite"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if not DEV.is_dir():
        pytest.skip(f"CodiEsp notes not found: {DEV}")
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    with postgres_database() as url:
        yield url


def backfill(
    store_url: str, *extra: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    command = ["backfill", str(DEV), "--store", store_url, "--no-progress", *extra]
    return subprocess.Popen(
        [sys.executable, "-m", "icdcoder", *command],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def results(store_url: str) -> int:
    with make_engine(store_url).connect() as connection:
        return int(connection.execute(text("select count(*) from results")).scalar() or 0)


def duplicates(store_url: str) -> int:
    query = text(
        "select count(*) from (select n.note_id, r.pack, count(*) as c from results r "
        "join notes n on n.id = r.note_pk group by n.note_id, r.pack having count(*) > 1) d"
    )
    with make_engine(store_url).connect() as connection:
        return int(connection.execute(query).scalar() or 0)


def summary_of(output: str) -> tuple[int, int]:
    match = SUMMARY.search(output)
    assert match is not None, output
    return int(match.group(1).replace(",", "")), int(match.group(2).replace(",", ""))


def test_sigkill_half_way_then_resume_gives_each_note_one_result(store_url: str) -> None:
    upgrade(make_engine(store_url))
    first = backfill(store_url)
    wait(lambda: results(store_url) >= NOTES // 2, "half the notes coded", timeout_s=900)
    first.send_signal(signal.SIGKILL)
    first.wait(30)
    at_kill = results(store_url)

    second = backfill(store_url)
    out, err = second.communicate(timeout=1200)
    assert second.returncode == 0, err
    coded, skipped = summary_of(out)
    assert (coded, skipped) == (NOTES - at_kill, at_kill)  # only the rest was coded
    assert results(store_url) == NOTES and duplicates(store_url) == 0

    started = time.monotonic()
    third = backfill(store_url)
    out, err = third.communicate(timeout=600)
    seconds = time.monotonic() - started
    assert third.returncode == 0, err
    assert summary_of(out) == (0, NOTES)
    print(f"\nresume: killed at {at_kill}, rerun coded {coded}; a third run took {seconds:.1f} s")
    counts = open_store(StoreConfig(url=store_url), auto_create=False).counts()
    assert counts.get("notes_coded") == NOTES and counts["failures"] == 0


def test_over_the_bus_with_a_worker_killed_mid_run(tmp_path: Path) -> None:
    if not DEV.is_dir():
        pytest.skip(f"CodiEsp notes not found: {DEV}")
    redis = RedisServer(tmp_path / "redis", "bus-pw-31", persistent=True)
    redis.start()
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    upgrade(make_engine(store_url))
    env = {
        "ICDCODER_BUS__REDIS_URL": redis.url,
        "ICDCODER_STORE__URL": store_url,
        "ICDCODER_STORE__TRIM_AFTER_S": "5",
        **FAST,
    }
    workers = Workers(tmp_path, env)
    try:
        workers.start_all()
        workers.start("store")
        wait(lambda: all(workers.ready(s) for s in ("segmenter", "retriever")), "workers")
        run = backfill(store_url, "--bus", "--max-in-flight", "32", env=env)
        wait(lambda: results(store_url) >= NOTES // 3, "a third of the notes", timeout_s=900)
        victim = workers.live("retriever")
        victim.send_signal(signal.SIGKILL)
        victim.wait(30)
        workers.start("retriever")
        out, err = run.communicate(timeout=1800)
        assert run.returncode == 0, err
        coded, skipped = summary_of(out)
        assert (coded, skipped) == (NOTES, 0)
        assert results(store_url) == NOTES and duplicates(store_url) == 0
        # what was stored left Redis (the store worker trims after its grace period)
        db = redis.client()
        wait(lambda: db.xlen("icdcoder:codes") == 0, "the codes stream trimmed", timeout_s=120)
    finally:
        workers.stop_all()
        redis.stop()
