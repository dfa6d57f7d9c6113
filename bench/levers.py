"""Accuracy levers on CodiEsp: score verifier/aggregator variants of a pack in seconds.

    # the lever table on dev: the pack's weights at several operating points
    python bench/levers.py table --split dev [--pack PACK]
    # the gold codes most often missed, and whether retrieval had them
    python bench/levers.py misses --split dev [--pack PACK]

Fitting moved into the package: ``icdcoder train --data ../shared/data/codiesp --split train
--pack BASE --out NEW_PACK --name NAME`` writes a pack with new weights (docs/confidence.md).
Both share one retrieval cache (``icdcoder.training.retrieval``): each split is segmented and
retrieved once per pack retrieval configuration (minutes), after which every variant takes
seconds. The memory is searched from cached span vectors as the retriever does; on a split
fitted on (train) each case's own examples are left out.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's icdcoder, not an installed one

from icdcoder.codiesp import CodiEspCase  # noqa: E402
from icdcoder.evaluate import CaseRun, EvalReport, build_report  # noqa: E402
from icdcoder.services.aggregator.core import Aggregator  # noqa: E402
from icdcoder.services.verifier.backends import CodedNotes, note_votes  # noqa: E402
from icdcoder.services.verifier.similarity import SimilarityVerifier  # noqa: E402
from icdcoder.services.verifier.weights import VerifierWeights  # noqa: E402
from icdcoder.shared.catalogue import Catalogue  # noqa: E402
from icdcoder.shared.pack import open_pack  # noqa: E402
from icdcoder.shared.settings import AggregatorConfig, Settings, VerifierConfig  # noqa: E402
from icdcoder.training.corpus import REPORTED_SPLITS, CodiEspCorpus  # noqa: E402
from icdcoder.training.train import TrainingData, retrieve_corpus  # noqa: E402

DATA = REPO.parent / "shared/data/codiesp"


@dataclass(frozen=True)
class Variant:
    name: str
    verifier: SimilarityVerifier
    combine: Literal["max", "noisy_or"] = "max"


@dataclass(frozen=True)
class Loaded:
    cases: list[CodiEspCase]
    data: TrainingData
    catalogue: Catalogue
    weights: VerifierWeights
    coded: CodedNotes
    pack: str


def load(split: str, pack: Path | None, limit: int | None) -> Loaded:
    settings = Settings()
    opened = open_pack(pack or settings.pack, index=settings.alphabetic_index)
    corpus = CodiEspCorpus(DATA, split)
    coded_cases = list(corpus.cases())
    data = retrieve_corpus(
        corpus.name,
        coded_cases,
        opened,
        settings,
        leave_case_out=split not in REPORTED_SPLITS,
    )
    if limit:  # the whole split is retrieved (and cached) once; a limit only scores fewer
        coded_cases = coded_cases[:limit]
        data = replace(data, cases=data.cases[:limit], notes=data.notes[:limit])
    notes = opened.memory.notes if opened.memory else ()
    return Loaded(
        cases=[CodiEspCase(c.case_id, c.text, c.codes) for c in coded_cases],
        data=data,
        catalogue=opened.catalogue,
        weights=VerifierWeights.read(opened.pack.weights_path),
        coded=note_votes(VerifierConfig(), notes),
        pack=opened.pack.id,
    )


def score(loaded: Loaded, variant: Variant) -> EvalReport:
    aggregator = Aggregator(loaded.catalogue, AggregatorConfig(combine=variant.combine))
    runs: list[CaseRun] = []
    for case, retrieved in zip(loaded.cases, loaded.data.notes, strict=True):
        coded = aggregator.aggregate(variant.verifier.verify_sync(retrieved))
        runs.append(CaseRun(case, coded, retrieved, sum(coded.timings.values())))
    return build_report(
        runs,
        catalogue_version=loaded.catalogue.version,
        wall_seconds=1.0,
        is_valid=loaded.catalogue.is_valid,
        is_code=loaded.catalogue.is_leaf,
    )


def reranked(loaded: Loaded, accept: float, per_note: int, review: float) -> SimilarityVerifier:
    return SimilarityVerifier(
        weights=loaded.weights.span,
        note_model=loaded.weights.note,
        similar_notes=loaded.coded.similar,
        note_classifier=loaded.coded.classifier,
        coded_notes=loaded.coded.counts,
        accept_threshold=accept,
        review_threshold=review,
        max_codes_per_note=per_note,
    )


def table(loaded: Loaded) -> None:
    span = loaded.weights.span
    variants = [Variant("a priori span weights, accept>=0.62", SimilarityVerifier())]

    def span_variant(
        accept: float, per_span: int, review: float, suggestions: int, combine: str
    ) -> Variant:
        return Variant(
            f"span model, accept>={accept}, {per_span}/span, review>={review} x{suggestions}, "
            f"{combine}",
            SimilarityVerifier(
                weights=span,
                accept_threshold=accept,
                review_threshold=review,
                max_codes_per_span=per_span,
                max_suggestions_per_span=suggestions,
            ),
            combine,  # type: ignore[arg-type]
        )

    # MAP moves with the review list and the combination; micro-F1 with accept and codes/span.
    variants.append(span_variant(0.1, 1, 0.02, 3, "max"))
    variants.append(span_variant(0.1, 1, 0.01, 5, "max"))
    variants.append(span_variant(0.1, 1, 0.01, 5, "noisy_or"))
    for accept in (0.15, 0.2, 0.25, 0.3):
        variants.append(span_variant(accept, 1, 0.01, 5, "max"))
    for accept in (0.1, 0.2, 0.3):
        variants.append(span_variant(accept, 2, 0.01, 5, "max"))
    if loaded.weights.note is not None:
        point = loaded.weights.note_point
        variants.append(
            Variant(
                f"note model, the pack's point ({point.accept_threshold}, "
                f"{point.max_codes_per_note}/note, review>={point.review_threshold})",
                reranked(
                    loaded,
                    point.accept_threshold,
                    point.max_codes_per_note,
                    point.review_threshold,
                ),
            )
        )
        for accept in (0.1, 0.15, 0.2, 0.3, 0.4):
            for review in (0.02, 0.005):
                variants.append(
                    Variant(
                        f"note model, accept>={accept}, 80/note, review>={review}",
                        reranked(loaded, accept, 80, review),
                    )
                )
    print(f"{loaded.pack} / {loaded.data.retrieval}: {len(loaded.cases)} cases")
    print(
        f"{'variant':<62} {'MAP':>6} {'microP':>7} {'microR':>7} {'microF1':>7} "
        f"{'R@20ex':>7} {'R@20cat':>7}"
    )
    for variant in variants:
        report = score(loaded, variant)
        r20 = next(r for r in report.candidate_recall if r.k == 20)
        m = report.micro
        print(
            f"{variant.name:<62} {report.map:>6.4f} {m.precision:>7.4f} {m.recall:>7.4f} "
            f"{m.f1:>7.4f} {r20.exact:>7.4f} {r20.category:>7.4f}"
        )


def misses(loaded: Loaded, top: int = 15) -> None:
    """The gold codes most often missed by the pack's verifier, and whether retrieval had them."""
    weights = loaded.weights
    point = weights.point(reranker=weights.note is not None)
    verifier = reranked(loaded, point.accept_threshold, point.max_codes_per_note, 0.02)
    if weights.note is None:
        verifier = SimilarityVerifier(
            weights=weights.span,
            accept_threshold=point.accept_threshold,
            max_codes_per_span=point.max_codes_per_span,
            review_threshold=0.02,
        )
    aggregator = Aggregator(loaded.catalogue)
    not_retrieved: Counter[str] = Counter()
    not_ranked: Counter[str] = Counter()
    wrong: Counter[str] = Counter()
    for case, note in zip(loaded.cases, loaded.data.notes, strict=True):
        coded = aggregator.aggregate(verifier.verify_sync(note))
        predicted = {c.code.lower() for c in coded.codes}
        accepted = {c.code.lower() for c in coded.codes if c.decision == "accept"}
        retrieved = {c.code.lower() for item in note.items for c in item.candidates[:20]}
        gold = {g.lower() for g in case.gold}
        for code in gold - predicted:
            (not_ranked if code in retrieved else not_retrieved)[code] += 1
        wrong.update(accepted - gold)

    def describe(code: str) -> str:
        info = loaded.catalogue.get(code)
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
    parser.add_argument("action", choices=["table", "misses"])
    parser.add_argument("--split", default="dev")
    parser.add_argument("--pack", type=Path, help="model pack (default ICDCODER_PACK, built in)")
    parser.add_argument("--limit", type=int, help="the first N cases only")
    args = parser.parse_args()
    loaded = load(args.split, args.pack, args.limit)
    if args.action == "misses":
        misses(loaded)
    else:
        table(loaded)


if __name__ == "__main__":
    main()
