"""In-process throughput: pipeline load time, notes/s over a folder of notes, seconds per stage.

    python -m bench.inprocess [--notes DIR] [--limit N] [--batch N] [--pack PACK] [--json]

The configuration is the environment's (``ICDCODER_*``, as every entrypoint reads it), so each
lever of docs/throughput.md is one variable, e.g. ``ICDCODER_RETRIEVER__ENCODER=torch
ICDCODER_RETRIEVER__INDEX=flat``. Notes are coded ``--batch`` at a time through
``Pipeline.code_batches`` (their retrieval queries embedded as one batch, the next batch retrieved
while this one is verified), as ``icdcoder backfill`` does; ``--no-overlap``: one
``Pipeline.code_many`` call a batch. Prints figures; asserts nothing (speed is reported, not
tested).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from collections.abc import AsyncIterator
from pathlib import Path

from icdcoder.bootstrap import build_pipeline
from icdcoder.inputs import read_note
from icdcoder.services.retriever.adapters import runtime
from icdcoder.shared.messages import CodedNote
from icdcoder.shared.settings import Settings

DEFAULT_NOTES = Path(__file__).resolve().parents[2] / "shared/data/codiesp/dev/text_files_en"
#: Notes coded before the clock starts (first calls allocate); not the measured notes, whose
#: queries would then be in the query cache.
WARM_UP = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.txt"))


async def main(args: argparse.Namespace) -> dict[str, object]:
    settings = Settings()
    if args.pack is not None:
        settings = settings.with_section(pack=args.pack)
    started = time.perf_counter()
    pipeline = build_pipeline(settings, progress=None)
    load_s = time.perf_counter() - started
    paths = sorted(args.notes.glob("*.txt"))[: args.limit]
    notes = [read_note(str(p), max_chars=200_000) for p in paths]
    await pipeline.code_many([read_note(str(p), max_chars=200_000) for p in WARM_UP])
    batch_s: list[float] = []
    stage_s: dict[str, float] = {}
    failed = 0
    batches = [notes[start : start + args.batch] for start in range(0, len(notes), args.batch)]
    started = t = time.perf_counter()
    results: AsyncIterator[list[CodedNote | Exception]]
    if args.no_overlap:
        results = (await pipeline.code_many(batch) for batch in batches)
    else:
        results = pipeline.code_batches(batches)
    async for coded_batch in results:
        for coded in coded_batch:
            if not isinstance(coded, CodedNote):
                failed += 1
                continue
            for stage, seconds in coded.timings.items():
                stage_s[stage] = stage_s.get(stage, 0.0) + seconds
        batch_s.append(time.perf_counter() - t)
        t = time.perf_counter()
    total = time.perf_counter() - started
    return {
        "pack": pipeline.pack.id,
        "runtime": runtime(settings.retriever),
        "threads": settings.retriever.threads,
        "cpus": os.cpu_count(),
        "batch": args.batch,
        "overlap": not args.no_overlap,
        "load_s": round(load_s, 2),
        "notes": len(notes),
        "failed": failed,
        "total_s": round(total, 2),
        "notes_per_s": round(len(notes) / total, 2),
        "median_batch_s": round(statistics.median(batch_s), 3),
        "stage_s_per_note": {k: round(v / len(notes), 4) for k, v in stage_s.items()},
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--notes", type=Path, default=DEFAULT_NOTES)
    parser.add_argument("--limit", type=int)
    parser.add_argument("--batch", type=int, default=8, help="notes per code_many call")
    parser.add_argument("--pack", type=Path, help="a model pack (default: the settings')")
    parser.add_argument(
        "--no-overlap",
        action="store_true",
        help="one code_many call a batch (no retrieval of the next batch during this one's "
        "verification)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON line")
    args = parser.parse_args()
    figures = asyncio.run(main(args))
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            print(f"{key}: {value}")
