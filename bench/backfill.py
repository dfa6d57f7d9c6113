"""Backfill throughput: what the results store costs, in process and over the bus, and what a
bus backfill leaves in Redis.

    python -m bench.backfill [--notes DIR] [--limit N] [--pg URL] [--bus] [--json]

In process, one pipeline is loaded once and the same notes are coded three ways, 16 at a time
as ``icdcoder backfill`` does: ``Pipeline.code_batches`` alone (no store), then ``Backfill`` into a
new SQLite file, then into a new PostgreSQL database (``--pg``: the server's admin URL; the
database is created and dropped). With ``--bus``, the stage workers and the store worker are
started as processes (``icdcoder worker``) on Redis database 12 (flushed), ``BusBackfill``
publishes the notes, and once every result is stored Redis is inspected: memory, entries left
per stream, and whether any stream entry still holds a note's text. Prints figures; asserts
nothing (speed is reported, not tested).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from icdcoder.backfill.runner import Backfill, BusBackfill
from icdcoder.backfill.sources import open_source
from icdcoder.bootstrap import Pipeline, build_pipeline
from icdcoder.inputs import read_note
from icdcoder.shared.messages import NoteIn
from icdcoder.shared.settings import Settings, StoreConfig
from icdcoder.shared.store.migrate import open_store, upgrade
from icdcoder.shared.store.repository import Store

DEFAULT_NOTES = Path(__file__).resolve().parents[2] / "shared/data/codiesp/dev/text_files_en"
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
BUS_URL = "redis://127.0.0.1:6379/12"
BATCH = 16


@contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    """A new PostgreSQL database at the schema's head; its URL; dropped afterwards."""
    import psycopg

    from icdcoder.shared.store.engine import make_engine

    name = f"icdcoder_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = f"{admin_url.rpartition('/')[0]}/{name}"
    try:
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        yield url
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def no_store(pipeline: Pipeline, notes: list[NoteIn]) -> float:
    started = time.perf_counter()
    batches = [notes[start : start + BATCH] for start in range(0, len(notes), BATCH)]
    async for _ in pipeline.code_batches(batches):
        pass
    return len(notes) / (time.perf_counter() - started)


async def into_store(pipeline: Pipeline, store: Store, folder: Path, limit: int | None) -> float:
    rows = list(open_source(str(folder)))[:limit]
    backfill = Backfill(
        store, lambda: pipeline, pack=pipeline.pack.id, max_chars=200_000, batch=BATCH
    )
    summary = await backfill.run(rows)
    if summary.coded != len(rows):
        raise SystemExit(f"backfill coded {summary.coded} of {len(rows)}: {summary.lines()}")
    return summary.coded / summary.seconds


async def over_the_bus(store_url: str, folder: Path, limit: int | None) -> dict[str, Any]:
    """The bus backfill's notes/s, then what Redis holds once the store has everything."""
    import redis as sync_redis

    from bench.bus_throughput import start_workers, stop, wait_started
    from icdcoder.shared.bus.admin import ensure_groups
    from icdcoder.shared.bus.wire import encode_entry
    from icdcoder.shared.pack import load_pack
    from icdcoder.shared.streams import NOTES

    db = sync_redis.Redis.from_url(BUS_URL)
    db.flushdb()
    rows = list(open_source(str(folder)))[:limit]
    os.environ["ICDCODER_STORE__URL"] = store_url
    os.environ["ICDCODER_STORE__TRIM_AFTER_S"] = "0"
    with tempfile.TemporaryDirectory() as logs:
        workers = start_workers(BUS_URL, 1, Path(logs), extra=["store"])
        try:
            wait_started(workers, 900)
            from redis.asyncio import Redis

            client = Redis.from_url(BUS_URL)
            await ensure_groups(client)

            async def publish(note: NoteIn) -> None:
                await client.xadd(NOTES, encode_entry(note))

            store = open_store(StoreConfig.model_validate({"url": store_url}))
            summary = await BusBackfill(
                store, publish, max_chars=200_000, pack=load_pack(None).id, max_in_flight=64
            ).run(rows)
            await client.aclose()
            time.sleep(5)  # the store worker trims what it stored (trim_after_s 0)
            texts = [r.text for r in rows if r.text]
            left = {
                key.decode(): db.xlen(key)
                for key in db.scan_iter(match="icdcoder:*")
                if db.type(key) == b"stream"
            }
            with_text = 0
            for key in left:
                for _, fields in db.xrange(key) or []:
                    blob = b" ".join(v for v in (fields or {}).values() if isinstance(v, bytes))
                    decoded = blob.decode("utf-8", "replace")
                    with_text += any(t[:200] in decoded for t in texts)
            memory = db.info("memory")["used_memory"]
        finally:
            stop(workers)
    db.flushdb()
    return {
        "notes_per_s": round(summary.coded / summary.seconds, 2),
        "coded": summary.coded,
        "failed": summary.failures,
        "redis_used_memory_mib": round(memory / 2**20, 2),
        "stream_entries_left": left,
        "entries_holding_note_text": with_text,
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    settings = Settings()
    # the same notes are coded three times: no query cache, or the later runs would not embed
    settings = settings.with_section(
        retriever=settings.retriever.model_copy(update={"query_cache": 0})
    )
    started = time.perf_counter()
    pipeline = build_pipeline(settings, progress=None)
    figures: dict[str, Any] = {"load_s": round(time.perf_counter() - started, 2)}
    paths = sorted(args.notes.glob("*.txt"))[: args.limit]
    notes = [read_note(str(p), max_chars=200_000) for p in paths]
    figures["notes"] = len(notes)
    await pipeline.code_many(notes[:2])  # warm-up
    figures["in_process_no_store"] = round(await no_store(pipeline, notes), 2)
    with tempfile.TemporaryDirectory() as folder:
        sqlite = StoreConfig.model_validate({"url": f"sqlite:///{folder}/bench.db"})
        rate = await into_store(pipeline, open_store(sqlite), args.notes, args.limit)
        figures["in_process_sqlite"] = round(rate, 2)
    if args.pg:
        with postgres_database(args.pg) as url:
            store = open_store(StoreConfig.model_validate({"url": url}))
            rate = await into_store(pipeline, store, args.notes, args.limit)
            figures["in_process_postgresql"] = round(rate, 2)
            store.engine.dispose()
    if args.bus:
        with postgres_database(args.pg or DEFAULT_PG) as url:
            figures["bus_postgresql"] = await over_the_bus(url, args.notes, args.limit)
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--notes", type=Path, default=DEFAULT_NOTES)
    parser.add_argument("--limit", type=int)
    parser.add_argument("--pg", default=DEFAULT_PG, help="PostgreSQL admin URL ('' to skip)")
    parser.add_argument("--bus", action="store_true", help="also backfill over the bus")
    parser.add_argument("--json", action="store_true", help="one JSON line")
    args = parser.parse_args()
    figures = asyncio.run(main(args))
    print(json.dumps(figures) if args.json else json.dumps(figures, indent=2))
