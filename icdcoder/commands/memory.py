"""``icdcoder memory codiesp``: build an example memory from a CodiEsp training split;
``icdcoder memory export``: build one from the review page's reviewed notes."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from icdcoder.commands.options import add_pipeline_options, fail, load_settings

#: Results are reported on dev: its gold may never feed the system.
REPORTED_SPLITS = frozenset({"dev", "test"})


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("memory", help="build an example memory of confirmed codes")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    codiesp = actions.add_parser(
        "codiesp",
        help="align CodiEsp-X gold evidence to spans of the English texts",
        description="Write confirmed span -> code examples (JSON lines) from a CodiEsp "
        "training split, aligning each Spanish gold evidence to a span of the English text. "
        "The pack's model aligns; 'icdcoder pack build --memory' puts the result in a pack.",
    )
    codiesp.add_argument("--data", type=Path, required=True, help="CodiEsp folder")
    codiesp.add_argument("--split", default="train", help="training split (default train)")
    codiesp.add_argument("--out", type=Path, required=True, help="memory file to write")
    add_pipeline_options(codiesp)
    codiesp.set_defaults(handler=run_codiesp)
    export = actions.add_parser(
        "export",
        help="the store's reviewed notes as an example memory",
        description="Write the store's reviewed notes as an example memory (JSON lines, the "
        "format of 'memory codiesp'): confirmed (accepted or added) codes with their evidence "
        "spans as examples, rejected codes with theirs as rejected examples, each note with "
        "its confirmed codes as a coded note. 'icdcoder pack build --memory' takes it.",
    )
    export.add_argument("--store", help="store URL (default ICDCODER_STORE__URL)")
    export.add_argument("--out", type=Path, required=True, help="memory file to write")
    export.set_defaults(handler=run_export)


def run_codiesp(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from icdcoder.codiesp import CodiEspError
    from icdcoder.memory_codiesp import build_examples, coded_notes
    from icdcoder.services.retriever.adapters import load_encoder
    from icdcoder.services.segmenter.core import Segmenter
    from icdcoder.shared.memory import write_examples
    from icdcoder.shared.pack import open_pack

    if args.split in REPORTED_SPLITS:
        return fail(f"refusing to learn from {args.split!r}: results are reported on it")
    settings = load_settings(args)
    started = time.perf_counter()
    opened = open_pack(settings.pack, cache_dir=settings.cache_dir, index=settings.alphabetic_index)
    try:
        examples, stats = build_examples(
            args.data,
            args.split,
            catalogue=opened.catalogue,
            segmenter=Segmenter(settings.segmenter),
            encoder=load_encoder(opened.pack, settings.retriever, settings.cache_dir),
            progress=lambda cases: tqdm(cases, desc="aligning", unit="case", file=sys.stderr),
        )
        notes = coded_notes(args.data, args.split, catalogue=opened.catalogue)
    except CodiEspError as exc:
        return fail(str(exc))
    write_examples(args.out, [*examples, *notes])
    print(
        f"{stats.examples:,} examples and {len(notes)} coded notes from {stats.cases} cases "
        f"-> {args.out} "
        f"({stats.aligned:,} of {stats.evidences:,} evidences aligned, "
        f"{stats.not_in_catalogue:,} with codes not in the catalogue, {stats.no_span:,} "
        f"without a span; {time.perf_counter() - started:.0f} s)"
    )
    return 0


def run_export(args: argparse.Namespace) -> int:
    from icdcoder.review.learning import ExportStats, memory_records
    from icdcoder.shared.memory import write_examples
    from icdcoder.shared.store.migrate import open_store
    from icdcoder.shared.store.review import ReviewStore

    store = open_store(load_settings(args).store, auto_create=False)
    stats = ExportStats()
    records = memory_records(ReviewStore(store).reviewed(), stats)
    if stats.coded_notes == 0:
        return fail("no reviewed note with a confirmed code in the store: nothing to export")
    write_examples(args.out, records)
    print(
        f"{stats.examples:,} examples, {stats.rejected:,} rejected examples and "
        f"{stats.coded_notes:,} coded notes from {stats.notes:,} reviewed notes -> {args.out}"
        + (f" ({stats.without_text:,} without text left out)" if stats.without_text else "")
        + (
            f"; {stats.added_without_evidence:,} added codes had no evidence span"
            if stats.added_without_evidence
            else ""
        )
    )
    return 0
