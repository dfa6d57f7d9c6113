"""``icdcoder learn``: a model pack learnt from a coded archive (notes and document-level codes).

The notes (a folder of ``.txt`` files, JSON lines or CSV, as ``icdcoder backfill`` reads them)
and an ``id<TAB>code`` file are read; the notes are segmented and retrieved with the base pack
(with ``--index``: the base with that Alphabetic Index; cached, like ``icdcoder train``'s
retrieval); each (note, code) is aligned to its nearest span(s) (``icdcoder/training/learn.py``);
the examples and coded notes are written as an example memory, a pack is built with it, and the
verifier weights are refitted on the same notes with that memory searched leave-one-note-out,
as ``icdcoder train`` does. docs/memory.md has the measured figures.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from icdcoder.commands.options import fail, load_settings
from icdcoder.commands.train import PACK_NAME
from icdcoder.training.learn import LearnStats, NoteSpans, Vectors

if TYPE_CHECKING:
    from icdcoder.shared.catalogue import Catalogue
    from icdcoder.shared.messages import RetrievedNote
    from icdcoder.shared.pack import Pack
    from icdcoder.shared.settings import Settings
    from icdcoder.training.corpus import CaseList, CodedCase

#: The retrieval cache's corpus name (its key also has the notes' ids and texts).
CORPUS = "learn"


def _fraction(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {raw!r}") from None
    if not -1.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between -1 and 1, got {value}")
    return value


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from icdcoder.commands.options import positive_int

    parser = subparsers.add_parser(
        "learn",
        help="learn a pack from coded notes: align codes to spans, build a memory, refit",
        description="Learn from a coded archive whose codes have no evidence spans: align each "
        "(note, code) to the span(s) of the note nearest to the code's catalogue texts (weak "
        "supervision), write them as an example memory with each note as a coded note, build a "
        "pack with it and refit the verifier weights on the same notes. Never learn from the "
        "notes that results are reported on.",
    )
    parser.add_argument(
        "--notes",
        required=True,
        help="the notes: a folder of .txt files (id: the file's stem), .jsonl or .csv",
    )
    parser.add_argument("--codes", type=Path, required=True, help="'id<TAB>code' lines")
    parser.add_argument("--out", type=Path, required=True, help="new pack folder")
    parser.add_argument("--name", required=True, help="new pack name (lower case, digits, . _ -)")
    parser.add_argument("--description", default="", help="one line on the new pack")
    parser.add_argument(
        "--pack", type=Path, help="base pack (default ICDCODER_PACK, else built in)"
    )
    parser.add_argument(
        "--index",
        "--index-csv",
        dest="index",
        type=Path,
        action="append",
        help="ICD-10-CM Alphabetic Index file, CMS XML or flattened CSV, replacing the base's "
        "(repeat for several; default: the base's, the built-in pack ships one)",
    )
    parser.add_argument("--memory-out", type=Path, help="also keep the example memory in this file")
    parser.add_argument("--cache-dir", type=Path, help="where retrievals and indexes are cached")
    parser.add_argument("--id-key", default="id", help="the notes' id field (JSONL, CSV)")
    parser.add_argument("--text-key", default="text", help="the notes' text field (JSONL, CSV)")
    parser.add_argument(
        "--floor",
        type=_fraction,
        default=0.35,
        help="no example when the best span's similarity is below this (default 0.35)",
    )
    parser.add_argument(
        "--second-margin",
        type=_fraction,
        default=0.05,
        help="keep a second span within this of the best (default 0.05; 0: one span)",
    )
    parser.add_argument(
        "--rounds",
        type=positive_int,
        default=2,
        help="2 (default): realign with other notes' examples as extra code texts; 1: not",
    )
    parser.add_argument(
        "--no-fit", action="store_true", help="keep the weights fitted for a memory; no refit"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    parser.set_defaults(handler=run)


def _problem(args: argparse.Namespace) -> str | None:
    """A one-line problem with the arguments, found before minutes of work."""
    if not PACK_NAME.match(args.name):
        return f"pack name {args.name!r}: lower case letters, digits, '.', '_' and '-' only"
    if args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
        return f"{args.out} exists and is not an empty folder: choose a new one"
    if not Path(args.notes).exists():
        return f"notes not found: {args.notes}"
    if not args.codes.is_file():
        return f"codes file not found: {args.codes}"
    for path in args.index or ():
        if not path.is_file():
            return f"alphabetic index not found: {path}"
    if args.pack is not None and not args.pack.is_dir():
        return f"base pack not found: {args.pack}"
    if args.second_margin < 0:
        return f"--second-margin must not be negative, got {args.second_margin}"
    return None


def _say(message: str) -> None:
    print(f"learn: {message}", file=sys.stderr, flush=True)


def read_notes(source: str, id_key: str, text_key: str) -> list[tuple[str, str]]:
    """(id, text) of every note of the source; the first unreadable one is an error."""
    from icdcoder.backfill.sources import open_source
    from icdcoder.training.learn import LearnError

    notes: list[tuple[str, str]] = []
    for row in open_source(source, id_key=id_key, text_key=text_key):
        if row.problem is not None or row.note_id is None or row.text is None:
            raise LearnError(f"{row.where}: {row.problem or 'no note'}")
        notes.append((row.note_id, row.text))
    if not notes:
        raise LearnError(f"{source}: no notes")
    return notes


def run(args: argparse.Namespace) -> int:
    from icdcoder.packs import PackSpec, build_pack
    from icdcoder.services.retriever.adapters import catalogue_encoder, load_encoder
    from icdcoder.shared.catalogue import load_catalogue
    from icdcoder.shared.index_terms import read_index
    from icdcoder.shared.memory import write_examples
    from icdcoder.shared.pack import load_pack, open_pack
    from icdcoder.training.learn import (
        AlignOptions,
        align_cases,
        check_ids,
        code_vectors,
        coded_cases,
        read_codes,
    )
    from icdcoder.training.train import retrieve_catalogue

    problem = _problem(args)
    if problem:
        return fail(problem)
    settings = load_settings(args)
    started = time.perf_counter()
    codes = read_codes(args.codes)
    notes = read_notes(args.notes, args.id_key, args.text_key)
    check_ids((note_id for note_id, _ in notes), codes)
    _say(f"{len(notes):,} notes, {len(codes):,} ids with codes")
    base = load_pack(settings.pack, index=settings.alphabetic_index)
    with tempfile.TemporaryDirectory(prefix="icdcoder-learn-") as tmp_name:
        tmp = Path(tmp_name)
        stage = base
        if args.index:
            plain = load_catalogue(cache_dir=settings.cache_dir)
            enrichment = read_index(args.index, plain)
            stage = build_pack(
                tmp / "stage",
                PackSpec(name=args.name, enrichment=enrichment),
                catalogue=plain,
                base=base,
            )
        opened_stage = open_pack(
            stage.root,
            cache_dir=settings.cache_dir,
            index=bool(args.index) or settings.alphabetic_index,
        )
        catalogue = opened_stage.catalogue
        stats = LearnStats()
        cases = coded_cases(notes, codes, catalogue, stats)
        if not cases:
            return fail(f"no note of {args.notes} has a code the catalogue has")
        _say(
            f"{len(cases):,} notes with catalogue codes; retrieving them with "
            f"{stage.name} (cached after the first run)"
        )
        retrieved, hit = retrieve_catalogue(
            CORPUS, cases, opened_stage, settings, progress=not args.no_progress
        )
        retrieval_seconds = time.perf_counter() - started
        spans = note_spans(retrieved.notes, retrieved.span_vectors)
        config = settings.retriever
        encoder = catalogue_encoder(config, load_encoder(stage, config, settings.cache_dir))
        _say("embedding the codes' catalogue texts and aligning")
        vectors = code_vectors((c for case in cases for c in case.codes), catalogue, encoder)
        options = AlignOptions(
            floor=args.floor,
            second_margin=args.second_margin,
            max_spans=2 if args.second_margin > 0 else 1,
            rounds=args.rounds,
        )
        result = align_cases(cases, spans, vectors, source=args.name, options=options, stats=stats)
        memory_path = args.memory_out or tmp / f"{args.name}-memory.jsonl"
        write_examples(memory_path, [*result.examples, *result.notes])
        align_seconds = time.perf_counter() - started - retrieval_seconds
        spec = PackSpec(name=args.name, description=args.description, memory=memory_path)
        if args.no_fit:
            pack = build_pack(args.out, spec, catalogue=catalogue, base=stage)
            pack_id, fitted = pack.id, "weights fitted for a memory (kept, no refit)"
        else:
            with_memory = build_pack(tmp / "memory", spec, catalogue=catalogue, base=stage)
            pack_id, fitted = _refit(args, settings, with_memory, cases, catalogue)
    print(summary(args, stats, pack_id, fitted))
    print(
        f"  seconds     retrieval {retrieval_seconds:.0f}{' (cached)' if hit else ''}, "
        f"alignment {align_seconds:.0f}, total {time.perf_counter() - started:.0f}"
    )
    return 0


def archive_corpus(
    notes: str,
    codes: Path,
    catalogue: Catalogue,
    *,
    id_key: str = "id",
    text_key: str = "text",
    stats: LearnStats | None = None,
) -> CaseList:
    """The notes of ``notes`` that have catalogue codes in ``codes``, as a corpus to fit on."""
    from icdcoder.training.corpus import CaseList
    from icdcoder.training.learn import coded_cases, read_codes

    by_id = read_codes(codes)
    read = read_notes(notes, id_key, text_key)
    cases = coded_cases(read, by_id, catalogue, stats if stats is not None else LearnStats())
    return CaseList(
        name=CORPUS,
        items=tuple(cases),
        description=f"{Path(notes).name} coded by {codes.name}",
    )


def note_spans(notes: Sequence[RetrievedNote], span_vectors: Vectors) -> dict[str, NoteSpans]:
    """Each retrieved note's span texts with their rows of the retrieval's span vectors."""
    out: dict[str, NoteSpans] = {}
    first = 0
    for note in notes:
        count = len(note.items)
        texts = tuple(item.span.text for item in note.items)
        out[note.note_id] = NoteSpans(texts, span_vectors[first : first + count])
        first += count
    return out


def _refit(
    args: argparse.Namespace,
    settings: Settings,
    pack: Pack,
    cases: Sequence[CodedCase],
    catalogue: Catalogue,
) -> tuple[str, str]:
    """The verifier weights refitted on ``cases`` with ``pack``'s memory searched
    leave-one-note-out, written with the pack's parts to ``args.out``; its id and a line."""
    from icdcoder.commands.train import _fitted, write_pack
    from icdcoder.shared.pack import open_pack
    from icdcoder.training.train import (
        FitOptions,
        base_reranker,
        fit_weights,
        retrieve_corpus,
    )
    from icdcoder.training.weights_file import read_weights

    description = f"{Path(args.notes).name} coded by {args.codes.name}"
    opened = open_pack(pack.root, catalogue=catalogue)
    _say("refitting the verifier weights (memory searched leave-one-note-out)")
    reranker = base_reranker(opened, settings)
    data = retrieve_corpus(
        CORPUS, cases, opened, settings, progress=not args.no_progress, reranker=reranker
    )
    weights, report = fit_weights(
        data,
        read_weights(opened.pack.weights_path),
        FitOptions(),
        corpus=description,
        settings=settings,
        progress=not args.no_progress,
    )
    if reranker is None:  # the note model was fitted on cosine's first candidates
        weights.pop("retrieval", None)
    return write_pack(args, opened, weights, report, description), _fitted(report, description)


def summary(args: argparse.Namespace, stats: LearnStats, pack_id: str, fitted: str) -> str:
    """Counts of what was read, aligned and dropped, and the pack written."""
    dropped = f" (e.g. {', '.join(stats.dropped_codes)})" if stats.dropped_codes else ""
    return "\n".join(
        [
            f"pack {pack_id}  ({args.out})",
            f"  notes       {stats.notes:,} with catalogue codes",
            f"  codes       {stats.codes:,} (note, code) pairs; {stats.not_in_catalogue:,} "
            f"not in the catalogue, dropped{dropped}",
            f"  aligned     {stats.aligned:,}; {stats.below_floor:,} below the floor "
            f"{args.floor}, {stats.no_span:,} in notes without a span",
            f"  memory      {stats.examples:,} examples, {stats.coded_notes:,} coded notes"
            + (f" (also in {args.memory_out})" if args.memory_out else ""),
            f"  weights     {fitted}",
        ]
    )
