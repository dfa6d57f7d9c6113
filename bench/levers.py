"""Accuracy levers on CodiEsp: retrieve once, then score verifier/aggregator variants in seconds.

    # 1. segment + retrieve a split once per retrieval configuration (cached as JSON lines)
    python bench/levers.py retrieve --split dev
    python bench/levers.py retrieve --split dev --index-csv INDEX_CSV  # index enrichment
    python bench/levers.py retrieve --split train
    # 2. fit the similarity verifier's weights on train (never on dev) and ship them
    python bench/levers.py fit --split train --out services/verifier/similarity_weights.json
    # 3. the lever table on dev
    python bench/levers.py table --split dev

Retrieval is the slow part (embedding every span); the verifier and aggregator take
milliseconds, so their variants are scored from the cached candidates.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from icdcoder.codiesp import CodiEspCase, read_split
from icdcoder.evaluate import CaseRun, EvalReport, build_report
from services.aggregator.core import Aggregator
from services.verifier.backends import similarity_weights
from services.verifier.core import SimilarityVerifier, SimilarityWeights, features
from shared.catalogue import Catalogue, load_catalogue
from shared.context import contextual_text
from shared.messages import RetrievedNote

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared/data/codiesp"
CACHE = REPO / "reports/levers"


def cache_path(split: str, index_csv: Path | None) -> Path:
    return CACHE / f"{split}-{'index' if index_csv else 'plain'}.jsonl"


def retrieve(split: str, index_csv: Path | None, limit: int | None) -> None:
    from services.retriever.adapters import load_retriever
    from services.segmenter.core import Segmenter
    from shared.settings import RetrieverSettings

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


def score(
    cases: list[CodiEspCase], notes: list[RetrievedNote], variant: Variant, catalogue: Catalogue
) -> EvalReport:
    aggregator = Aggregator(catalogue)
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
        for item in retrieved.items:
            cands = item.candidates[:considered]
            read_as = contextual_text(item.span) or item.span.text
            for i, cand in enumerate(cands):
                yield [1.0, *features(read_as, cands, i)], float(cand.code.lower() in gold)


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


def fit(split: str, index_csv: Path | None, out: Path) -> None:
    if split == "dev":
        sys.exit("refusing to fit on dev: dev is where results are reported")
    cases, notes = load_cached(split, index_csv)
    pairs = list(training_rows(cases, notes, SimilarityVerifier().considered))
    x = np.array([p[0] for p in pairs])
    y = np.array([p[1] for p in pairs])
    w = fit_logistic(x, y)
    weights = {"bias": w[0], "score": w[1], "coverage": w[2], "margin": w[3]}
    result = {name: round(float(v), 4) for name, v in weights.items()} | {
        "provenance": {
            "fitted_on": f"CodiEsp {split} (English), {len(cases)} cases",
            "retrieval": cache_path(split, index_csv).stem,
            "candidates": len(y),
            "positives": int(y.sum()),
            "tool": "bench/levers.py fit",
        }
    }
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def table(split: str, index_csv: Path | None, weights: Path | None) -> None:
    catalogue = load_catalogue()
    cases, notes = load_cached(split, index_csv)
    fitted = similarity_weights(weights)
    prior = SimilarityWeights()
    variants = [
        Variant("a priori weights, accept>=0.62, review>=0.50", SimilarityVerifier(weights=prior)),
        Variant("fitted weights, accept>=0.62, review>=0.50", SimilarityVerifier(weights=fitted)),
    ]
    for accept in (0.1, 0.15, 0.2, 0.25):
        for review in (0.02, 0.05):
            variants.append(
                Variant(
                    f"fitted weights, accept>={accept}, review>={review}",
                    SimilarityVerifier(
                        weights=fitted, accept_threshold=accept, review_threshold=review
                    ),
                )
            )
    print(f"{split} / {cache_path(split, index_csv).stem}: {len(cases)} cases")
    print(
        f"{'variant':<46} {'MAP':>6} {'microP':>7} {'microR':>7} {'microF1':>7} "
        f"{'R@20ex':>7} {'R@20cat':>7}"
    )
    for variant in variants:
        report = score(cases, notes, variant, catalogue)
        r20 = next(r for r in report.candidate_recall if r.k == 20)
        m = report.micro
        print(
            f"{variant.name:<46} {report.map:>6.3f} {m.precision:>7.3f} {m.recall:>7.3f} "
            f"{m.f1:>7.3f} {r20.exact:>7.3f} {r20.category:>7.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("action", choices=["retrieve", "fit", "table"])
    parser.add_argument("--split", default="dev")
    parser.add_argument("--index-csv", type=Path)
    parser.add_argument("--limit", type=int)
    parser.add_argument("--weights", type=Path, help="fitted weights JSON for 'table'")
    parser.add_argument(
        "--out", type=Path, default=Path("services/verifier/similarity_weights.json")
    )
    args = parser.parse_args()
    if args.action == "retrieve":
        retrieve(args.split, args.index_csv, args.limit)
    elif args.action == "fit":
        fit(args.split, args.index_csv, args.out)
    else:
        table(args.split, args.index_csv, args.weights)


if __name__ == "__main__":
    main()
