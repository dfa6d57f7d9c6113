"""``icdcoder train``: fit a pack's verifier weights on a coded corpus and write a new pack.

The corpus is a CodiEsp split (``--data``) or the reviewed notes of a store (``--store``: the
review page's confirmed codes are the gold, so rejected codes are negatives; docs/review.md).

The corpus is retrieved with the base pack (its model, enrichment and memory; cached, so only
the first fit on a corpus takes minutes), the span model is fitted on the first ``--span-cases``
cases and the note model on all of them, and a new pack is written with the base's parts and the
new weights. The base's operating points are kept: check them on held-out data
(``icdcoder eval --split dev --pack OUT``). docs/confidence.md says what each part is.
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from icdcoder.codiesp import TEXT_DIRS
from icdcoder.commands.options import fail, load_settings, positive_int
from icdcoder.services.retriever.rerank import Reranker
from icdcoder.shared.pack import OpenPack, open_pack
from icdcoder.training.corpus import CodiEspCorpus, Corpus, trainable_cases
from icdcoder.training.train import (
    FitOptions,
    FitReport,
    TrainingData,
    base_reranker,
    base_tree_params,
    fit_retrieval,
    fit_weights,
    retrieve_corpus,
)

#: As :class:`icdcoder.shared.pack.Manifest` requires.
PACK_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,80}$")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "train",
        help="fit the verifier's span and note models on a coded corpus into a new pack",
        description="Retrieve a CodiEsp training split (--data) or the reviewed notes of a "
        "store (--store) with the base pack (cached), fit the "
        "span model (logistic) and the note model (boosted trees) on its gold codes, and write "
        "a new pack with the base's parts and the new weights. The base's operating points "
        "are kept; check them on dev. Never fits on dev or test.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=Path, help="CodiEsp folder")
    source.add_argument(
        "--store",
        help="fit on the reviewed notes of this store (the review page's decisions are gold)",
    )
    source.add_argument(
        "--notes",
        help="fit on an archive: a folder of .txt notes, .jsonl or .csv, with --codes",
    )
    parser.add_argument(
        "--codes", type=Path, help="with --notes: 'id<TAB>code' lines, the notes' codes"
    )
    parser.add_argument("--split", default="train", help="split to fit on (default train)")
    parser.add_argument("--lang", choices=sorted(TEXT_DIRS), default="en", help="default en")
    parser.add_argument("--out", type=Path, required=True, help="new pack folder")
    parser.add_argument("--name", required=True, help="new pack name (lower case, digits, . _ -)")
    parser.add_argument("--description", default="", help="one line on the new pack")
    parser.add_argument(
        "--pack", type=Path, help="base pack (default ICDCODER_PACK, else built in)"
    )
    parser.add_argument("--cache-dir", type=Path, help="where retrievals and indexes are cached")
    parser.add_argument(
        "--span-cases", type=positive_int, help="fit the span model on the first N cases (all)"
    )
    parser.add_argument(
        "--span-features",
        help="comma-separated span features (default: those of the base's weights)",
    )
    parser.add_argument(
        "--note-model",
        choices=["trees", "logistic"],
        default="trees",
        help="boosted trees (default; the base's tree settings) or logistic weights",
    )
    parser.add_argument(
        "--trees", type=positive_int, help="boosting rounds of the note trees (the base's)"
    )
    parser.add_argument("--leaves", type=positive_int, help="leaves of each note tree (the base's)")
    parser.add_argument(
        "--min-leaf", type=positive_int, help="fewest codes a note tree's leaf holds (the base's)"
    )
    parser.add_argument(
        "--no-span", action="store_true", help="keep the base's span weights, fit the note model"
    )
    parser.add_argument(
        "--considered",
        type=positive_int,
        help="candidates of each span to fit on and score (default: the base's)",
    )
    parser.add_argument(
        "--rerank",
        type=positive_int,
        metavar="POOL",
        help="also fit the retrieval re-ranker over each span's first POOL codes (40 for the "
        "built-in pack; default: keep the base's)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    parser.set_defaults(handler=run)


def _problem(args: argparse.Namespace) -> str | None:
    """A one-line problem with the arguments, found before minutes of retrieval."""
    from icdcoder.services.verifier.span_model import FEATURES

    if (args.notes is None) != (args.codes is None):
        return "--notes and --codes go together"
    if not PACK_NAME.match(args.name):
        return f"pack name {args.name!r}: lower case letters, digits, '.', '_' and '-' only"
    if args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
        return f"{args.out} exists and is not an empty folder: choose a new one"
    if args.span_features is not None:
        if args.no_span:
            return "--span-features and --no-span contradict each other"
        names = [name.strip() for name in args.span_features.split(",") if name.strip()]
        unknown = [name for name in names if name not in FEATURES]
        if unknown or not names:
            return (
                f"unknown span feature(s) {', '.join(unknown) or '(none given)'}; "
                f"choose from {', '.join(FEATURES)}"
            )
    trees = (args.trees, args.leaves, args.min_leaf)
    if args.note_model == "logistic" and any(v is not None for v in trees):
        return "--trees, --leaves and --min-leaf set the note trees, not logistic weights"
    if args.no_span and args.span_cases is not None:
        return "--span-cases and --no-span contradict each other"
    return None


def run(args: argparse.Namespace) -> int:
    from icdcoder.training.weights_file import read_weights

    problem = _problem(args)
    if problem:
        return fail(problem)
    settings = load_settings(args)
    corpus: Corpus
    opened: OpenPack | None = None
    if args.store is not None:
        from icdcoder.review.learning import ReviewedCorpus
        from icdcoder.shared.store.migrate import open_store
        from icdcoder.shared.store.review import ReviewStore

        corpus = ReviewedCorpus(ReviewStore(open_store(settings.store, auto_create=False)))
    elif args.notes is not None:
        from icdcoder.commands.learn import archive_corpus

        # an archive's codes are read in the catalogue's form: the pack first
        opened = open_pack(settings.pack, cache_dir=settings.cache_dir)
        corpus = archive_corpus(args.notes, args.codes, opened.catalogue)
    else:
        corpus = CodiEspCorpus(args.data, args.split, lang=args.lang)
    cases = trainable_cases(corpus)  # CorpusError: refused or unreadable, one line
    opened = opened or open_pack(
        settings.pack, cache_dir=settings.cache_dir, index=settings.alphabetic_index
    )
    try:
        base = read_weights(opened.pack.weights_path)
    except ValueError as exc:
        return fail(f"base pack {opened.pack.name}: {exc}")
    started = time.perf_counter()
    retrieval: dict[str, Any] | None = None
    if args.rerank is not None:
        retrieval = fit_retrieval(
            corpus.name,
            corpus.description,
            cases,
            opened,
            settings,
            args.rerank,
            progress=not args.no_progress,
        )
        reranker: Reranker | None = Reranker.from_dict(retrieval)
    else:
        reranker = base_reranker(opened, settings)
    data = retrieve_corpus(
        corpus.name, cases, opened, settings, progress=not args.no_progress, reranker=reranker
    )
    fit_started = time.perf_counter()
    options = FitOptions(
        span_cases=args.span_cases,
        fit_span=not args.no_span,
        span_features=tuple(n.strip() for n in args.span_features.split(",") if n.strip())
        if args.span_features
        else None,
        note_model=args.note_model,
        tree_params=tree_params(base, args),
        considered=args.considered,
    )
    try:
        weights, report = fit_weights(
            data,
            base,
            options,
            corpus=corpus.description,
            settings=settings,
            progress=not args.no_progress,
        )
    except ValueError as exc:
        return fail(f"cannot fit on {corpus.name}: {exc}")
    # the note model was fitted on the candidates this re-ranker keeps (or on cosine's first)
    weights.pop("retrieval", None)
    if reranker is not None:
        weights["retrieval"] = retrieval or base["retrieval"]
    fit_seconds = time.perf_counter() - fit_started
    pack_id = write_pack(args, opened, weights, report, corpus.description)
    print(summary(pack_id, args.out, data, report, weights, corpus.description))
    print(
        f"  seconds     retrieval {data.seconds:.0f}"
        f"{' (cached)' if data.from_cache else ''}, fit {fit_seconds:.0f}, "
        f"total {time.perf_counter() - started:.0f}"
    )
    return 0


def tree_params(base: dict[str, Any], args: argparse.Namespace) -> dict[str, float | int]:
    """The base's tree settings with those the command line sets."""
    given = {
        "max_iter": args.trees,
        "max_leaf_nodes": args.leaves,
        "min_samples_leaf": args.min_leaf,
    }
    return base_tree_params(base) | {name: v for name, v in given.items() if v is not None}


def write_pack(
    args: argparse.Namespace,
    opened: OpenPack,
    weights: dict[str, Any],
    report: FitReport,
    corpus: str,
) -> str:
    """The new pack: the base's parts (memory included), the new weights; its id."""
    from icdcoder.packs import PackSpec, build_pack
    from icdcoder.shared.pack import MANIFEST, load_pack
    from icdcoder.training.weights_file import write_weights

    with tempfile.TemporaryDirectory(prefix="icdcoder-train-") as tmp:
        path = Path(tmp) / "weights.json"
        write_weights(path, weights)
        spec = PackSpec(
            name=args.name,
            description=args.description,
            weights=path,
            memory=opened.pack.memory_path,
        )
        pack = build_pack(args.out, spec, catalogue=opened.catalogue, base=opened.pack)
    # say where the weights came from rather than the temporary file they were copied from
    provenance = dict(pack.manifest.provenance) | {"weights": _fitted(report, corpus)}
    manifest = pack.manifest.model_copy(update={"provenance": provenance})
    tmp_manifest = args.out / f".{MANIFEST}.tmp"
    tmp_manifest.write_text(manifest.model_dump_json(indent=2) + "\n")
    tmp_manifest.replace(args.out / MANIFEST)
    return load_pack(args.out).id


def _fitted(report: FitReport, corpus: str) -> str:
    span = f"span model on {report.span_cases} cases" if report.span_cases else "base span model"
    trees = report.tree_params
    note = (
        f"note trees {trees['max_iter']} x {trees['max_leaf_nodes']} leaves"
        if trees
        else "logistic note model"
    )
    return f"icdcoder train on {corpus}: {span}, {note} on {report.note_cases} cases"


def summary(
    pack_id: str,
    out: Path,
    data: TrainingData,
    report: FitReport,
    weights: dict[str, Any],
    corpus: str,
) -> str:
    """What was fitted, on what, and the operating points kept."""
    from icdcoder.services.verifier.span_model import FEATURES

    span_values = " ".join(
        f"{name} {weights[name]:+.4f}" for name in ("bias", *FEATURES) if name in weights
    )
    span_line = (
        f"  span model  {report.span_cases:,} cases, {report.candidates:,} candidates, "
        f"{report.span_positives:,} positives: {span_values}"
        if report.span_cases
        else f"  span model  kept from the base: {span_values}"
    )
    trees = report.tree_params
    kind = f"{trees['max_iter']} trees of {trees['max_leaf_nodes']} leaves" if trees else "logistic"
    span_point = weights.get("operating_point") or {}
    note_point = (weights.get("note") or {}).get("operating_point") or {}
    lines = [
        f"pack {pack_id}  ({out})",
        f"  corpus      {corpus}: {len(data.cases):,} cases, "
        f"{'memory left out per case' if data.memory else 'no memory'}",
        span_line,
        f"  note model  {kind}: {report.note_cases:,} cases, {report.codes:,} codes, "
        f"{report.note_positives:,} positives",
        f"  considered  {weights['considered']} candidates a span",
        "  kept        operating points of the base: "
        f"span {_point(span_point)}; note {_point(note_point)} (check them on dev)",
    ]
    return "\n".join(lines)


def _point(point: dict[str, Any]) -> str:
    shown = {
        "accept_threshold": "accept",
        "review_threshold": "review",
        "max_codes_per_span": "per span",
        "max_codes_per_note": "per note",
    }
    parts = [f"{label} {point[key]}" for key, label in shown.items() if key in point]
    return ", ".join(parts) or "none (defaults)"
