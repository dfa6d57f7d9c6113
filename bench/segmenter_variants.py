"""Does PyRuSH sentence splitting, or medspaCy's Sectionizer, serve as well as our segmenter?

    python -m bench.segmenter_variants --variant ours [--split dev] [--limit N] [--out FILE]
    python -m bench.segmenter_variants --variant pyrush
    python -m bench.segmenter_variants --variant sectionizer

Run from the repository root with ``-m`` (so this checkout's code is imported), one variant
at a time (a full dev run takes minutes: retrieval dominates). Each run builds the in-process
pipeline as ``icdcoder eval`` does (settings from the ``ICDCODER_*`` environment), swaps in a
segmenter whose sentence splitter is the variant (``services/segmenter/variants.py``; "ours"
keeps the default), scores the split with ``icdcoder.evaluate.evaluate`` and prints one
Markdown table row: MAP, micro-F1, candidate recall@20 (exact), spans per note and segmenter
seconds. ``--out FILE`` also appends the row's figures as a JSON line. Results:
``docs/segmenter.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from icdcoder.bootstrap import build_pipeline
from icdcoder.codiesp import read_split
from icdcoder.evaluate import evaluate
from icdcoder.services.segmenter import variants
from icdcoder.services.segmenter.core import Segmenter
from icdcoder.services.segmenter.sentences import SentenceSplitter, split_sentences
from icdcoder.shared.messages import NoteIn, SegmentedNote
from icdcoder.shared.settings import SegmenterConfig, Settings

DATA = Path(__file__).resolve().parents[2] / "shared/data/codiesp"

#: Variant name -> builder of its sentence splitter.
VARIANTS: dict[str, Callable[[], SentenceSplitter]] = {
    "ours": lambda: split_sentences,
    "pyrush": variants.pyrush_sentences,
    "sectionizer": variants.medspacy_sections,
}


class CountingSegmenter(Segmenter):
    """The segmenter, counting the spans it returns."""

    def __init__(self, config: SegmenterConfig, splitter: SentenceSplitter) -> None:
        super().__init__(config, sentence_splitter=splitter)
        self.spans = 0
        self.notes = 0

    def segment(self, note: NoteIn) -> SegmentedNote:
        segmented = super().segment(note)
        self.spans += len(segmented.spans)
        self.notes += 1
        return segmented


async def run(variant: str, data: Path, split: str, limit: int | None) -> dict[str, object]:
    settings = Settings()
    cases = read_split(data, split, limit=limit)
    pipeline = build_pipeline(settings, progress=None)
    segmenter = CountingSegmenter(settings.segmenter, VARIANTS[variant]())
    pipeline = replace(pipeline, segmenter=segmenter)
    report = await evaluate(
        pipeline,
        cases,
        progress=False,
        is_valid=pipeline.catalogue.is_valid,
        is_code=pipeline.catalogue.is_leaf,
        split=split,
        lang="en",
    )
    recall20 = next(r.exact for r in report.candidate_recall if r.k == 20)
    return {
        "variant": variant,
        "split": split,
        "cases": report.cases,
        "map": round(report.map, 4),
        "micro_f1": round(report.micro.f1, 4),
        "recall20_exact": round(recall20, 4),
        "spans_per_note": round(segmenter.spans / max(segmenter.notes, 1), 2),
        "segmenter_seconds": round(report.stage_seconds.get("segmenter", 0.0), 1),
        "wall_seconds": round(report.wall_seconds, 1),
        "date": time.strftime("%Y-%m-%d"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Score a segmenter variant on CodiEsp.")
    parser.add_argument("--variant", choices=sorted(VARIANTS), required=True)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--split", default="dev")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--out", type=Path, help="append the figures as a JSON line")
    args = parser.parse_args()
    print(f"segmenter code: {Path(variants.__file__).parent}", file=sys.stderr)
    row = asyncio.run(run(args.variant, args.data, args.split, args.limit))
    print("| variant | MAP | micro-F1 | recall@20 exact | spans/note | segmenter s |")
    print(
        f"| {row['variant']} | {row['map']:.4f} | {row['micro_f1']:.4f} "
        f"| {row['recall20_exact']:.4f} | {row['spans_per_note']:.1f} "
        f"| {row['segmenter_seconds']:.1f} |"
    )
    if args.out:
        with args.out.open("a", encoding="utf-8") as out:
            out.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
