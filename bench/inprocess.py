"""In-process figures: pipeline load time, one-note latency, notes/s over a folder of notes.

    python bench/inprocess.py [--notes ../shared/data/codiesp/dev/text_files_en] [--limit N]

Prints figures; asserts nothing (speed is reported, not tested).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path

from icdcoder.bootstrap import build_pipeline
from icdcoder.inputs import read_note
from icdcoder.shared.settings import RetrieverSettings

DEFAULT_NOTES = Path(__file__).resolve().parents[2] / "shared/data/codiesp/dev/text_files_en"


async def main(notes_dir: Path, limit: int | None, index_csv: Path | None) -> None:
    started = time.perf_counter()
    pipeline = build_pipeline(retriever=RetrieverSettings(index_csv=index_csv), progress=None)
    load_s = time.perf_counter() - started
    paths = sorted(notes_dir.glob("*.txt"))[:limit]
    notes = [read_note(str(p), max_chars=200_000) for p in paths]
    latencies: list[float] = []
    stage_s: dict[str, float] = {}
    started = time.perf_counter()
    for note in notes:
        t = time.perf_counter()
        coded = await pipeline.code(note)
        latencies.append(time.perf_counter() - t)
        for stage, seconds in coded.timings.items():
            stage_s[stage] = stage_s.get(stage, 0.0) + seconds
    total = time.perf_counter() - started
    print(f"pipeline load (catalogue, model, cached index): {load_s:.1f} s")
    print(f"notes: {len(notes)}  total: {total:.1f} s  notes/s: {len(notes) / total:.2f}")
    print(
        f"latency per note: median {statistics.median(latencies) * 1000:.0f} ms, "
        f"max {max(latencies) * 1000:.0f} ms"
    )
    print("seconds per stage: " + ", ".join(f"{k} {v:.1f}" for k, v in stage_s.items()))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--notes", type=Path, default=DEFAULT_NOTES)
    parser.add_argument("--limit", type=int)
    parser.add_argument("--index-csv", type=Path)
    args = parser.parse_args()
    asyncio.run(main(args.notes, args.limit, args.index_csv))
