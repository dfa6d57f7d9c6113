"""The throughput levers of docs/throughput.md, one row each: notes/s in one process (notes
coded 1 or 16 at a time), and the dev accuracy of that configuration (MAP, micro-F1, candidate
recall@1/5/20 from ``icdcoder eval``).

    python -m bench.throughput_levers [--pack PACK] [--only NAME ...] [--out FILE.jsonl]

Each lever is a set of ``ICDCODER_*`` variables, run in fresh processes so that nothing is
shared between rows (an index a configuration needs is built into the cache on its first run,
outside the timings). Prints one JSON line per row; asserts nothing (speed is reported, not
tested). Run it on a quiet machine: the figures are wall-clock.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared/data/codiesp"

#: name -> (settings, notes per ``code_many`` call)
LEVERS: dict[str, tuple[dict[str, str], int]] = {
    "torch encoder, flat index (before)": (
        {"ICDCODER_RETRIEVER__ENCODER": "torch", "ICDCODER_RETRIEVER__INDEX": "flat"},
        1,
    ),
    "torch encoder, HNSW index": (
        {"ICDCODER_RETRIEVER__ENCODER": "torch", "ICDCODER_RETRIEVER__INDEX": "hnsw"},
        1,
    ),
    "int8 queries and catalogue, HNSW": (
        {"ICDCODER_RETRIEVER__CATALOGUE_PRECISION": "query"},
        1,
    ),
    "int8 queries, float32 catalogue, HNSW efSearch 128": (
        {"ICDCODER_RETRIEVER__HNSW_EF_SEARCH": "128"},
        1,
    ),
    "int8 queries, float32 catalogue, HNSW efSearch 256 (default)": ({}, 1),
    "default, 16 notes per batch": ({}, 16),
}


def run(command: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(
        command, cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def row(name: str, env: dict[str, str], batch: int, pack: Path | None) -> dict[str, Any]:
    packed = ["--pack", str(pack)] if pack else []
    # first: build whatever index the configuration needs (not timed below)
    run([sys.executable, "-m", "icdcoder", "index", "build", *packed], env)
    speed = json.loads(
        run(
            [sys.executable, "-m", "bench.inprocess", "--batch", str(batch), "--json", *packed],
            env,
        ).splitlines()[-1]
    )
    with tempfile.TemporaryDirectory() as out:
        evaluate = ["eval", "--data", str(DATA), "--split", "dev", "--no-progress", "--out", out]
        run([sys.executable, "-m", "icdcoder", *evaluate, *packed], env)
        report = json.loads((Path(out) / "eval-dev.json").read_text())
    recall = {f"recall@{r['k']}": round(r["exact"], 4) for r in report["candidate_recall"]}
    return {
        "lever": name,
        "runtime": speed["runtime"],
        "batch": batch,
        "notes_per_s": speed["notes_per_s"],
        "stage_s_per_note": speed["stage_s_per_note"],
        "map": round(report["map"], 4),
        "micro_f1": round(report["micro"]["f1"], 4),
        **recall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pack", type=Path)
    parser.add_argument("--only", nargs="+", help="lever names (substrings) to run")
    parser.add_argument("--out", type=Path, help="append the rows to this JSON Lines file")
    args = parser.parse_args()
    for name, (env, batch) in LEVERS.items():
        if args.only and not any(part in name for part in args.only):
            continue
        figures = row(name, env, batch, args.pack)
        line = json.dumps(figures)
        print(line, flush=True)
        if args.out:
            with args.out.open("a") as f:
                f.write(line + "\n")


if __name__ == "__main__":
    main()
