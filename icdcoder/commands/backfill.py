"""``icdcoder backfill SOURCE...``: code an archive into the results store, resumably.

    icdcoder backfill notes/ --store postgresql://coder@db/icd          # a folder of .txt
    icdcoder backfill export.jsonl export2.csv                          # JSON Lines, CSV
    icdcoder backfill --from-db postgresql://ro@emr/ehr \\
        --query "select note_id as id, body as text, discharge_date from discharges"
    icdcoder backfill notes/ --bus      # through the workers; results via `worker store`

Prints a progress bar on stderr (notes/s, ETA when the total is known, failures so far), then
a summary; exits 1 when any note failed, 130 when interrupted (the summary is printed).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Iterator
from itertools import chain
from typing import Any

from tqdm import tqdm

from icdcoder.backfill.runner import Backfill, BusBackfill, Progress, Summary
from icdcoder.backfill.sources import SourceRow
from icdcoder.commands.options import add_pipeline_options, fail, load_settings, positive_int
from icdcoder.shared.messages import NoteIn
from icdcoder.shared.settings import Settings
from icdcoder.shared.store.repository import Store


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "backfill",
        help="code an archive (folder, JSON Lines, CSV, SQL query) into the results store",
        description="Code every note of the sources not yet coded by this pack and keep "
        "results and failures in the store. Rerun to resume.",
    )
    parser.add_argument(
        "sources", nargs="*", metavar="SOURCE", help="folder of .txt, .jsonl or .csv files"
    )
    parser.add_argument("--from-db", metavar="URL", help="read notes from this database ...")
    parser.add_argument("--query", help="... with this SQL query (columns id and text)")
    parser.add_argument("--id-column", default="id", help="id field/column (default id)")
    parser.add_argument("--text-column", default="text", help="text field/column (default text)")
    parser.add_argument("--store", help="results store URL (default ICDCODER_STORE__URL)")
    parser.add_argument("--no-text", action="store_true", help="store offsets, never note text")
    parser.add_argument("--bus", action="store_true", help="code through the Redis workers")
    parser.add_argument(
        "--batch", type=positive_int, default=16, help="notes per batch in process (default 16)"
    )
    parser.add_argument(
        "--max-in-flight", type=positive_int, default=64, help="--bus: notes awaiting results"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_pipeline_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from icdcoder.backfill.sources import count_rows, open_source
    from icdcoder.shared.store.migrate import open_store

    if args.from_db and not args.query:
        return fail("--from-db needs --query")
    if args.query and not args.from_db:
        return fail("--query needs --from-db")
    if not args.sources and not args.from_db:
        return fail("give a SOURCE (folder, .jsonl, .csv) or --from-db URL --query SQL")
    settings = load_settings(args)
    store = open_store(settings.store)
    keys = {"id_key": args.id_column, "text_key": args.text_column}
    if args.from_db:
        sources = [open_source(args.query, from_db=args.from_db, **keys)]
        total = None
    else:
        sources = [open_source(source, **keys) for source in args.sources]
        counts = [count_rows(source) for source in args.sources]
        total = None if None in counts else sum(c for c in counts if c is not None)
    rows = chain.from_iterable(sources)
    progress = None if args.no_progress else _bar(total)
    try:
        summary = asyncio.run(_run(args, settings, store, rows, progress))
    except KeyboardInterrupt:
        print("icdcoder: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    finally:
        if progress is not None:
            progress.close()
    for line in summary.lines():
        print(line)
    return 1 if summary.failures else 0


async def _run(
    args: argparse.Namespace,
    settings: Settings,
    store: Store,
    rows: Iterator[SourceRow],
    progress: Progress | None,
) -> Summary:
    max_chars = settings.segmenter.max_note_chars
    if args.bus:
        from icdcoder.shared.bus.admin import connect, ensure_groups
        from icdcoder.shared.bus.wire import encode_entry
        from icdcoder.shared.pack import load_pack
        from icdcoder.shared.streams import NOTES

        redis = connect(settings.bus)
        await ensure_groups(redis)

        async def publish(note: NoteIn) -> None:
            await redis.xadd(NOTES, encode_entry(note))

        try:
            return await BusBackfill(
                store,
                publish,
                max_chars=max_chars,
                pack=load_pack(
                    settings.pack, index=settings.alphabetic_index
                ).id,  # the workers' pack: the same ICDCODER_PACK
                max_in_flight=args.max_in_flight,
                progress=progress,
            ).run(rows)
        finally:
            await redis.aclose()
    from icdcoder.bootstrap import build_pipeline
    from icdcoder.shared.pack import load_pack

    backfill = Backfill(
        store,
        lambda: build_pipeline(settings, progress=None),
        pack=load_pack(settings.pack, index=settings.alphabetic_index).id,
        max_chars=max_chars,
        batch=args.batch,
        progress=progress,
    )
    return await backfill.run(rows)


def _bar(total: int | None) -> tqdm[Any]:
    return tqdm(total=total, desc="backfill", unit="note", file=sys.stderr, mininterval=1.0)
