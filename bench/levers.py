"""Accuracy levers on CodiEsp: retrieve once, then score verifier/aggregator variants in seconds.

    # 1. segment + retrieve a split once per retrieval configuration (cached as JSON lines)
    python bench/levers.py retrieve --split dev
    python bench/levers.py retrieve --split dev --index-csv INDEX_CSV  # index enrichment
    python bench/levers.py retrieve --split train
    # 2. fit the similarity verifier's weights on train (never on dev) and ship them
    python bench/levers.py fit --split train --out services/verifier/similarity_weights.json
    # 3. the lever table on dev
    python bench/levers.py table --split dev

    # the example memory (icdcoder memory codiesp ... --out MEMORY, from train only):
    python bench/levers.py vectors --split train   # span vectors of the cached notes
    python bench/levers.py vectors --split dev
    python bench/levers.py fit --split train --memory MEMORY \
        --out services/verifier/similarity_weights_memory.json
    python bench/levers.py table --split dev --memory MEMORY
    # the note-level re-ranker, fitted on train over the span weights' confidences
    python bench/levers.py fit-note --split train --memory MEMORY \
        --weights services/verifier/similarity_weights_memory.json --out WEIGHTS_WITH_NOTE
    python bench/levers.py table --split dev --memory MEMORY --weights WEIGHTS_WITH_NOTE

Retrieval is the slow part (embedding every span); the verifier and aggregator take
milliseconds, so their variants are scored from the cached candidates. The memory is searched
the way the retriever does (exact inner product, the same merge), from cached span vectors;
on train each case's own examples are left out (leave-one-case-out), so fitted weights never
see a span find its own label.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from icdcoder.codiesp import CodiEspCase, read_split
from icdcoder.evaluate import CaseRun, EvalReport, build_report
from icdcoder.services.aggregator.core import Aggregator
from icdcoder.services.verifier.backends import (
    CodedNotes,
    note_votes,
    note_weights,
    operating_point,
    similarity_weights,
    weights_file,
)
from icdcoder.services.verifier.core import (
    FEATURES,
    NOTE_FEATURES,
    SimilarityVerifier,
    count_coded_notes,
    features,
    note_support,
)
from icdcoder.services.verifier.note_classifier import NoteClassifier
from icdcoder.services.verifier.similar_notes import SimilarNotes
from icdcoder.shared.catalogue import Catalogue, load_catalogue
from icdcoder.shared.context import contextual_text
from icdcoder.shared.memory import load_memory
from icdcoder.shared.messages import RetrievedNote
from icdcoder.shared.settings import AggregatorSettings, MemorySettings, VerifierSettings

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared/data/codiesp"
CACHE = REPO / "reports/levers"


def cache_path(split: str, index_csv: Path | None) -> Path:
    return CACHE / f"{split}-{'index' if index_csv else 'plain'}.jsonl"


def retrieve(split: str, index_csv: Path | None, limit: int | None) -> None:
    from icdcoder.services.retriever.adapters import load_retriever
    from icdcoder.services.segmenter.core import Segmenter
    from icdcoder.shared.settings import RetrieverSettings

    cases = read_split(DATA, split, limit=limit)
    settings = RetrieverSettings(index_csv=index_csv)
    retriever = load_retriever(settings, load_catalogue(index_csv), progress=None)
    segmenter = Segmenter()
    out = cache_path(split, index_csv)
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with out.open("w", encoding="utf-8") as handle:
        for case in tqdm(cases, desc=f"retrieve {split}", file=sys.stderr):
            retrieved = retriever.retrieve(segmenter.segment(case.note()))
            handle.write(retrieved.model_dump_json() + "\n")
    seconds = time.perf_counter() - started
    print(f"{len(cases)} cases in {seconds:.0f} s ({len(cases) / seconds:.2f} notes/s) -> {out}")


def load_cached(
    split: str, index_csv: Path | None
) -> tuple[list[CodiEspCase], list[RetrievedNote]]:
    path = cache_path(split, index_csv)
    notes = [RetrievedNote.model_validate_json(line) for line in path.read_text().splitlines()]
    cases = {case.case_id: case for case in read_split(DATA, split)}
    return [cases[n.note_id] for n in notes], notes


@dataclass(frozen=True)
class Variant:
    name: str
    verifier: SimilarityVerifier
    combine: Literal["max", "noisy_or"] = "max"


def score(
    cases: list[CodiEspCase], notes: list[RetrievedNote], variant: Variant, catalogue: Catalogue
) -> EvalReport:
    aggregator = Aggregator(catalogue, AggregatorSettings(combine=variant.combine))
    runs: list[CaseRun] = []
    for case, retrieved in zip(cases, notes, strict=True):
        coded = aggregator.aggregate(variant.verifier.verify_sync(retrieved))
        runs.append(CaseRun(case, coded, retrieved, sum(coded.timings.values())))
    return build_report(
        runs, catalogue_version=catalogue.version, wall_seconds=1.0, is_valid=catalogue.is_valid
    )


def training_rows(
    cases: list[CodiEspCase], notes: list[RetrievedNote], considered: int
) -> Iterator[tuple[list[float], float]]:
    for case, retrieved in zip(cases, notes, strict=True):
        gold = {code.lower() for code in case.gold}
        counts = note_support(retrieved.items, considered)
        for item in retrieved.items:
            cands = item.candidates[:considered]
            read_as = contextual_text(item.span) or item.span.text
            for i, cand in enumerate(cands):
                row = [1.0, *features(read_as, cands, i, counts)]
                yield row, float(cand.code.lower() in gold)


def vectors_path(split: str, index_csv: Path | None) -> Path:
    return cache_path(split, index_csv).with_suffix(".spans.npy")


def encode_spans(split: str, index_csv: Path | None) -> None:
    from icdcoder.services.retriever.adapters import load_encoder
    from icdcoder.shared.settings import RetrieverSettings

    _, notes = load_cached(split, index_csv)
    texts = [item.span.text for note in notes for item in note.items]
    started = time.perf_counter()
    vectors = load_encoder(RetrieverSettings()).encode(texts)
    np.save(vectors_path(split, index_csv), vectors)
    print(f"{len(texts):,} spans encoded in {time.perf_counter() - started:.0f} s")


def with_memory(
    notes: list[RetrievedNote],
    span_vectors: npt.NDArray[np.float32],
    memory: Path,
    catalogue: Catalogue,
    *,
    leave_case_out: bool,
    neighbours: int = 10,
) -> list[RetrievedNote]:
    """The notes as the retriever would return them with ``memory`` configured."""
    from icdcoder.services.retriever.adapters import load_encoder
    from icdcoder.services.retriever.core import IndexRows, memory_hits, merge_memory
    from icdcoder.shared.memory import load_memory
    from icdcoder.shared.settings import RetrieverSettings

    examples = load_memory(memory, catalogue).examples
    rows = IndexRows(codes=[e.code for e in examples], texts=[e.text for e in examples])
    example_vectors = load_encoder(RetrieverSettings()).encode(list(rows.texts))
    owners = np.array([e.source.rsplit(":", 1)[-1] for e in examples])
    descriptions = {code: info.description for code, info in catalogue.codes.items()}
    out: list[RetrievedNote] = []
    offset = 0
    for note in tqdm(notes, desc="memory", file=sys.stderr):
        n = len(note.items)
        sims = span_vectors[offset : offset + n] @ example_vectors.T
        offset += n
        if leave_case_out:
            sims[:, owners == note.note_id] = -np.inf
        top = np.argsort(-sims, axis=1)[:, :neighbours]
        items = []
        for i, item in enumerate(note.items):
            ids = [int(j) for j in top[i] if np.isfinite(sims[i, j])]
            hits = memory_hits([float(sims[i, j]) for j in ids], ids, rows)
            items.append(
                item.model_copy(
                    update={"candidates": merge_memory(item.candidates, hits, descriptions)}
                )
            )
        out.append(note.model_copy(update={"items": items}))
    if offset != span_vectors.shape[0]:
        sys.exit("span vectors do not match the cached notes: run 'vectors' again")
    return out


def load_notes(
    split: str, index_csv: Path | None, memory: Path | None, catalogue: Catalogue
) -> tuple[list[CodiEspCase], list[RetrievedNote]]:
    cases, notes = load_cached(split, index_csv)
    if memory is not None:
        vectors = np.load(vectors_path(split, index_csv))
        notes = with_memory(
            notes,
            vectors,
            memory,
            catalogue,
            leave_case_out=split != "dev",
            neighbours=MemorySettings().memory_neighbours,  # ICDCODER_MEMORY_NEIGHBOURS
        )
    return cases, notes


def fit_logistic(
    x: npt.NDArray[np.float64], y: npt.NDArray[np.float64], l2: float = 1e-2
) -> npt.NDArray[np.float64]:
    """Logistic regression by Newton's method with a small L2 penalty (column 0: bias)."""
    w = np.zeros(x.shape[1])
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-(x @ w)))
        grad = x.T @ (p - y) + l2 * w
        hess = (x * (p * (1 - p))[:, None]).T @ x + l2 * np.eye(x.shape[1])
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-9:
            break
    return w


def provenance(
    split: str,
    cases: int,
    index_csv: Path | None,
    memory: Path | None,
    rows: str,
    y: npt.NDArray[np.float64],
    action: str,
) -> dict[str, object]:
    """Where a fit came from, stored beside its weights."""
    return {
        "fitted_on": f"CodiEsp {split} (English), {cases} cases",
        "retrieval": cache_path(split, index_csv).stem,
        "memory": "leave-one-case-out" if memory else None,
        rows: len(y),
        "positives": int(y.sum()),
        "tool": f"bench/levers.py {action}",
    }


def fit(split: str, index_csv: Path | None, memory: Path | None, out: Path) -> None:
    if split == "dev":
        sys.exit("refusing to fit on dev: dev is where results are reported")
    catalogue = load_catalogue(index_csv)
    cases, notes = load_notes(split, index_csv, memory, catalogue)
    pairs = list(training_rows(cases, notes, SimilarityVerifier().considered))
    x = np.array([p[0] for p in pairs])
    y = np.array([p[1] for p in pairs])
    used = list(FEATURES) if memory else [f for f in FEATURES if not f.startswith("memory")]
    columns = [0, *(1 + FEATURES.index(f) for f in used)]
    w = fit_logistic(x[:, columns], y)
    weights = dict(zip(["bias", *used], w.tolist(), strict=True))
    result = {name: round(float(v), 4) for name, v in weights.items()} | {
        "provenance": provenance(split, len(cases), index_csv, memory, "candidates", y, "fit")
    }
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


class LeaveOut:
    """Similar-notes votes without one note of the memory (leave-one-case-out on train)."""

    def __init__(self, notes: SimilarNotes, source: str) -> None:
        self.notes, self.source = notes, source

    def votes(self, text: str) -> dict[str, float]:
        return self.notes.votes(text, exclude_source=self.source)


def similar_notes(memory: Path | None, catalogue: Catalogue) -> SimilarNotes | None:
    if memory is None:
        return None
    notes = load_memory(memory, catalogue).notes
    return SimilarNotes(notes, neighbours=MemorySettings().similar_notes) if notes else None


def production_votes(memory: Path | None, catalogue: Catalogue) -> CodedNotes:
    """Similar notes, note classifier and code counts exactly as a worker with this memory
    builds them."""
    return note_votes(VerifierSettings(memory_path=memory), catalogue)


FOLDS = 10


def fold(case_id: str) -> int:
    return zlib.crc32(case_id.encode()) % FOLDS


class CrossFitted:
    """Note classifiers and code counts each learnt without one fold of the memory's notes: a
    train note is scored by the classifier that never saw it, and its codes are counted among
    the other folds' notes, scaled to the whole memory (cross-fitting; a refit per note would
    take minutes)."""

    def __init__(self, memory: Path, catalogue: Catalogue) -> None:
        notes = load_memory(memory, catalogue).notes
        owner = [note.source.rsplit(":", 1)[-1] for note in notes]
        folds = [
            [n for n, o in zip(notes, owner, strict=True) if fold(o) != k] for k in range(FOLDS)
        ]
        self.models = [
            NoteClassifier(kept) for kept in tqdm(folds, desc="note classifiers", file=sys.stderr)
        ]
        self.counts = [
            {
                code: n * len(notes) / len(kept)
                for code, n in count_coded_notes(note.codes for note in kept).items()
            }
            for kept in folds
        ]

    def without(self, case_id: str) -> NoteClassifier:
        return self.models[fold(case_id)]

    def counts_without(self, case_id: str) -> dict[str, float]:
        return self.counts[fold(case_id)]


def fit_note(
    split: str,
    index_csv: Path | None,
    memory: Path | None,
    weights: Path | None,
    out: Path,
    *,
    trees: bool = False,
) -> None:
    """Fit the note-level re-ranker on the span verifier's output and write both into ``out``."""
    if split == "dev":
        sys.exit("refusing to fit on dev: dev is where results are reported")
    catalogue = load_catalogue(index_csv)
    cases, notes = load_notes(split, index_csv, memory, catalogue)
    verifier = SimilarityVerifier(weights=similarity_weights(weights, memory=memory is not None))
    similar = similar_notes(memory, catalogue)
    classifiers = CrossFitted(memory, catalogue) if memory else None
    x_rows: list[list[float]] = []
    y_rows: list[float] = []
    for case, note in zip(cases, notes, strict=True):
        gold = {code.lower() for code in case.gold}
        counts = note_support(note.items, verifier.considered)
        # each train note's own codes are left out of its similar-notes vote and classifier
        votes = LeaveOut(similar, f"codiesp-{split}:{case.case_id}") if similar else None
        classifier = classifiers.without(case.case_id) if classifiers else None
        scorer = replace(
            verifier,
            similar_notes=votes,
            note_classifier=classifier,
            coded_notes=classifiers.counts_without(case.case_id) if classifiers else {},
        )
        for code, row in scorer.note_rows(note, counts).items():
            x_rows.append([1.0, *row.features()])
            y_rows.append(float(code.lower() in gold))
    x, y = np.array(x_rows), np.array(y_rows)
    chosen = weights_file(weights, memory=memory is not None)
    base = json.loads(chosen.read_text()) if chosen else {}
    point = (base.get("note") or {}).get("operating_point")
    fitted = provenance(split, len(cases), index_csv, memory, "codes", y, "fit-note")
    if trees:
        base["note"] = fit_trees(x[:, 1:], y) | {"provenance": fitted}
        print(json.dumps(base["note"]["params"], indent=2))
    else:
        w = fit_logistic(x, y)
        names = ["bias", *NOTE_FEATURES]
        base["note"] = {name: round(float(v), 4) for name, v in zip(names, w, strict=True)}
        base["note"]["provenance"] = fitted
        print(json.dumps(base["note"], indent=2))
    if point:
        # the operating point was chosen on dev for the previous fit: kept, to be re-checked
        base["note"]["operating_point"] = point
    out.write_text(compact_json(base) + "\n")


def compact_json(data: object) -> str:
    """Indented JSON with each list of numbers on one line (the trees stay readable)."""
    return re.sub(
        r"\[\s+([-+0-9.eE,\s]+?)\s+\]",
        lambda m: "[" + re.sub(r",\s+", ", ", m.group(1)) + "]",
        json.dumps(data, indent=2),
    )


#: Boosting settings of ``fit-note --trees``: the best pool MAP of 5-fold cross-validation on
#: train (by case) among 200/300/400 trees of 15 leaves and 300 of 31 (0.423-0.427).
TREE_PARAMS: dict[str, float | int] = {
    "max_iter": 300,
    "learning_rate": 0.05,
    "max_leaf_nodes": 31,
    "min_samples_leaf": 100,
    "l2_regularization": 1.0,
}


def fit_trees(x: npt.NDArray[np.float64], y: npt.NDArray[np.float64]) -> dict[str, object]:
    """Gradient-boosted trees over the note features, exported as JSON (services/verifier/
    boosted.py evaluates them)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    from icdcoder.services.verifier.boosted import export_sklearn

    model = HistGradientBoostingClassifier(**TREE_PARAMS, early_stopping=False, random_state=0)  # type: ignore[arg-type]
    model.fit(x, y)
    return {"features": list(NOTE_FEATURES), "params": TREE_PARAMS, "trees": export_sklearn(model)}


def table(split: str, index_csv: Path | None, memory: Path | None, weights: Path | None) -> None:
    catalogue = load_catalogue(index_csv)
    cases, notes = load_notes(split, index_csv, memory, catalogue)
    fitted = similarity_weights(weights, memory=memory is not None)
    variants = [Variant("a priori weights, accept>=0.62", SimilarityVerifier())]

    def fitted_variant(
        accept: float, per_span: int, review: float, suggestions: int, combine: str
    ) -> Variant:
        return Variant(
            f"fitted, accept>={accept}, {per_span}/span, review>={review} x{suggestions}, "
            f"{combine}",
            SimilarityVerifier(
                weights=fitted,
                accept_threshold=accept,
                review_threshold=review,
                max_codes_per_span=per_span,
                max_suggestions_per_span=suggestions,
            ),
            combine,  # type: ignore[arg-type]
        )

    # MAP moves with the review list and the combination; micro-F1 with accept and codes/span.
    variants.append(fitted_variant(0.1, 1, 0.02, 3, "max"))
    variants.append(fitted_variant(0.1, 1, 0.01, 5, "max"))
    variants.append(fitted_variant(0.1, 1, 0.01, 5, "noisy_or"))
    for accept in (0.15, 0.2, 0.25, 0.3):
        variants.append(fitted_variant(accept, 1, 0.01, 5, "max"))
    for accept in (0.1, 0.2, 0.3):
        variants.append(fitted_variant(accept, 2, 0.01, 5, "max"))
    reranker = note_weights(weights, memory=memory is not None)
    coded = production_votes(memory, catalogue)
    if reranker is not None:
        for accept in (0.2, 0.3, 0.4, 0.5):
            for per_note in (40, 80):
                variants.append(
                    Variant(
                        f"note re-ranker, accept>={accept}, {per_note}/note, review>=0.01",
                        SimilarityVerifier(
                            weights=fitted,
                            note_weights=reranker,
                            similar_notes=coded.similar,
                            note_classifier=coded.classifier,
                            coded_notes=coded.counts,
                            accept_threshold=accept,
                            review_threshold=0.01,
                            max_codes_per_note=per_note,
                        ),
                    )
                )
    print(f"{split} / {cache_path(split, index_csv).stem}: {len(cases)} cases")
    print(
        f"{'variant':<62} {'MAP':>6} {'microP':>7} {'microR':>7} {'microF1':>7} "
        f"{'R@20ex':>7} {'R@20cat':>7}"
    )
    for variant in variants:
        report = score(cases, notes, variant, catalogue)
        r20 = next(r for r in report.candidate_recall if r.k == 20)
        m = report.micro
        print(
            f"{variant.name:<62} {report.map:>6.3f} {m.precision:>7.3f} {m.recall:>7.3f} "
            f"{m.f1:>7.3f} {r20.exact:>7.3f} {r20.category:>7.3f}"
        )


def misses(
    split: str, index_csv: Path | None, memory: Path | None, weights: Path | None, top: int = 15
) -> None:
    """The gold codes most often missed by the default verifier, and whether retrieval had them."""

    catalogue = load_catalogue(index_csv)
    cases, notes = load_notes(split, index_csv, memory, catalogue)
    reranker = note_weights(weights, memory=memory is not None)
    point = operating_point(weights, memory=memory is not None, note=reranker is not None)
    coded = production_votes(memory, catalogue)
    verifier = SimilarityVerifier(
        weights=similarity_weights(weights, memory=memory is not None),
        note_weights=reranker,
        similar_notes=coded.similar,
        note_classifier=coded.classifier,
        coded_notes=coded.counts,
        accept_threshold=point.accept_threshold,
        max_codes_per_span=point.max_codes_per_span,
        max_codes_per_note=point.max_codes_per_note,
        review_threshold=0.02,
    )
    aggregator = Aggregator(catalogue)
    not_retrieved: Counter[str] = Counter()
    not_ranked: Counter[str] = Counter()
    wrong: Counter[str] = Counter()
    for case, note in zip(cases, notes, strict=True):
        coded = aggregator.aggregate(verifier.verify_sync(note))
        predicted = {c.code.lower() for c in coded.codes}
        accepted = {c.code.lower() for c in coded.codes if c.decision == "accept"}
        retrieved = {c.code.lower() for item in note.items for c in item.candidates[:20]}
        gold = {g.lower() for g in case.gold}
        for code in gold - predicted:
            (not_ranked if code in retrieved else not_retrieved)[code] += 1
        wrong.update(accepted - gold)

    def describe(code: str) -> str:
        info = catalogue.get(code)
        return info.description[:40] if info else "not in the catalogue"

    for title, counter in (
        ("gold codes never retrieved (top 20 of any span)", not_retrieved),
        ("gold codes retrieved but not output", not_ranked),
        ("accepted codes not in gold", wrong),
    ):
        total = sum(counter.values())
        shown = ", ".join(f"{code} ({describe(code)}) x{n}" for code, n in counter.most_common(top))
        print(f"{title}: {total} pairs\n  {shown}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "action", choices=["retrieve", "vectors", "fit", "fit-note", "table", "misses"]
    )
    parser.add_argument("--memory", type=Path, help="example memory JSONL (fit, table)")
    parser.add_argument("--split", default="dev")
    parser.add_argument("--index-csv", type=Path)
    parser.add_argument("--limit", type=int)
    parser.add_argument("--trees", action="store_true", help="fit-note: boosted trees")
    parser.add_argument("--weights", type=Path, help="fitted weights JSON for 'table' and 'misses'")
    parser.add_argument(
        "--out", type=Path, default=Path("services/verifier/similarity_weights.json")
    )
    args = parser.parse_args()
    if args.action == "retrieve":
        retrieve(args.split, args.index_csv, args.limit)
    elif args.action == "vectors":
        encode_spans(args.split, args.index_csv)
    elif args.action == "fit":
        fit(args.split, args.index_csv, args.memory, args.out)
    elif args.action == "fit-note":
        fit_note(args.split, args.index_csv, args.memory, args.weights, args.out, trees=args.trees)
    elif args.action == "misses":
        misses(args.split, args.index_csv, args.memory, args.weights)
    else:
        table(args.split, args.index_csv, args.memory, args.weights)


if __name__ == "__main__":
    main()
