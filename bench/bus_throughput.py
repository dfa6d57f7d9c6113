"""Notes/s through the bus (worker processes on Redis) against the in-process pipeline.

    python bench/bus_throughput.py [--notes DIR] [--limit N] [--retrievers 1 2] [--no-inprocess]

For each retriever replica count, starts one worker process per stage (``icdcoder worker``)
plus the extra retrievers, waits until each has loaded its core, warms up with one note, then
times the notes from submission to the last result on the codes stream. Uses Redis database
12 of ``--redis-url`` (flushed). Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import redis as sync_redis

from icdcoder.inputs import read_note
from icdcoder.shared.bus.admin import ensure_groups
from icdcoder.shared.bus.wire import encode_entry
from icdcoder.shared.messages import NoteIn
from icdcoder.shared.streams import CODES, NOTES, STAGES

REPO = Path(__file__).resolve().parents[1]
#: ``icdcoder worker``: the bus subcommands as the ``icdcoder`` CLI runs them.
WORKER = [sys.executable, "-m", "icdcoder", "worker"]
DEFAULT_NOTES = REPO.parent / "shared/data/codiesp/dev/text_files_en"
DEFAULT_URL = "redis://127.0.0.1:6379/12"
READY = ("core_loaded", "store_opened")


def start_workers(
    url: str, retrievers: int, logs: Path, *, extra: Sequence[str] = ()
) -> list[tuple[subprocess.Popen[bytes], Path]]:
    """One worker process per stage, ``retrievers`` retrievers, and the ``extra`` workers
    (e.g. ``store``), with the environment's settings."""
    stages = [s for s in STAGES for _ in range(retrievers if s == "retriever" else 1)]
    stages += list(extra)
    started = []
    for i, stage in enumerate(stages):
        path = logs / f"{stage}-{i}.log"
        with path.open("wb") as log:
            proc = subprocess.Popen(
                [*WORKER, stage, "--http-port", "0"],
                cwd=REPO,
                env={
                    **os.environ,
                    "ICDCODER_BUS__REDIS_URL": url,
                    "ICDCODER_BUS__CONSUMER_NAME": f"{stage}-{i}",
                },
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        started.append((proc, path))
    return started


def wait_started(workers: list[tuple[subprocess.Popen[bytes], Path]], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    for proc, path in workers:
        # a stage has loaded its core; the store worker has opened its store
        while not any(m in path.read_text(errors="replace") for m in READY):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"worker did not start: {path}\n{path.read_text()[-2000:]}")
            time.sleep(0.2)


def stop(workers: list[tuple[subprocess.Popen[bytes], Path]]) -> None:
    for proc, _ in workers:
        proc.send_signal(signal.SIGTERM)
    for proc, _ in workers:
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()


def run_through_bus(db: sync_redis.Redis, notes: list[NoteIn], timeout_s: float) -> float:
    """Seconds from the first submission to the last result."""
    before = db.xlen(CODES)
    started = time.perf_counter()
    for note in notes:
        db.xadd(NOTES, encode_entry(note))
    while db.xlen(CODES) < before + len(notes):
        if time.perf_counter() - started > timeout_s:
            raise SystemExit(f"only {db.xlen(CODES) - before} of {len(notes)} results in time")
        time.sleep(0.02)
    return time.perf_counter() - started


def bus_figure(url: str, notes: list[NoteIn], retrievers: int, timeout_s: float) -> float:
    db = sync_redis.Redis.from_url(url)
    db.flushdb()
    asyncio.run(_ensure_groups(url))
    with tempfile.TemporaryDirectory() as logs:
        workers = start_workers(url, retrievers, Path(logs))
        try:
            wait_started(workers, timeout_s)
            run_through_bus(db, [notes[0].model_copy(update={"note_id": "warm-up"})], timeout_s)
            seconds = run_through_bus(db, notes, timeout_s)
        finally:
            stop(workers)
    db.flushdb()
    db.close()
    return len(notes) / seconds


async def _ensure_groups(url: str) -> None:
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    try:
        await ensure_groups(client)
    finally:
        await client.aclose()


async def inprocess_figure(notes: list[NoteIn]) -> float:
    from icdcoder.bootstrap import build_pipeline

    pipeline = build_pipeline(progress=None)
    await pipeline.code(notes[0])  # warm-up, as for the bus
    started = time.perf_counter()
    for note in notes:
        await pipeline.code(note)
    return len(notes) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--notes", type=Path, default=DEFAULT_NOTES)
    parser.add_argument("--limit", type=int)
    parser.add_argument("--retrievers", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--redis-url", default=os.environ.get("ICDCODER_BENCH_REDIS_URL", DEFAULT_URL)
    )
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--no-inprocess", action="store_true")
    args = parser.parse_args()

    paths = sorted(args.notes.glob("*.txt"))[: args.limit]
    notes = [read_note(str(p), max_chars=200_000) for p in paths]
    figures: dict[str, float] = {}
    if not args.no_inprocess:
        figures["in process"] = asyncio.run(inprocess_figure(notes))
        print(f"in process: {figures['in process']:.2f} notes/s", flush=True)
    for replicas in args.retrievers:
        name = f"bus, {replicas} retriever(s), 1 replica of each other stage"
        figures[name] = bus_figure(args.redis_url, notes, replicas, args.timeout)
        print(f"{name}: {figures[name]:.2f} notes/s", flush=True)
    print(json.dumps({"notes": len(notes), "cpus": os.cpu_count(), "notes_per_s": figures}))


if __name__ == "__main__":
    main()
