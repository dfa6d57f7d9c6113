"""CodiEsp-D metrics: pure functions over case ids and their codes, no IO.

Every code compared here is in *gold form*: lower case with a dot (``e11.9``, ``n23``), the way
CodiEsp writes its gold standard. Convert pipeline codes with :func:`gold_form` first.

Inputs are mappings from a case id to that case's codes:

- gold: ``Mapping[str, Collection[str]]``, order does not matter;
- ranked predictions: ``Mapping[str, Sequence[str]]``, best first (see :func:`rank_codes`).

A code listed twice for one case counts once, in gold and in predictions alike.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from icdcoder.shared.codes import normalise_code

CaseCodes = Mapping[str, Collection[str]]
RankedCodes = Mapping[str, Sequence[str]]
Level = Literal["exact", "category"]


def gold_form(code: str) -> str:
    """CodiEsp's spelling of a code: ``E11.9`` -> ``e11.9``, ``N23`` -> ``n23``.

    Raises :class:`icdcoder.shared.codes.InvalidCodeError` for strings not shaped like a code.
    """
    return normalise_code(code).lower()


def category_form(code: str) -> str:
    """The three-character category in gold form: ``E11.9`` -> ``e11``."""
    return gold_form(code)[:3]


def always_valid(code: str) -> bool:
    """The default validity predicate: every gold code counts as a valid code."""
    return True


def unique(codes: Iterable[str]) -> list[str]:
    """Codes in their first-seen order, each once."""
    return list(dict.fromkeys(codes))


def rank_codes(scored: Iterable[tuple[str, float]]) -> list[str]:
    """Codes (gold form) by confidence, highest first; ties by code; a repeated code keeps its
    best confidence and appears once."""
    best: dict[str, float] = {}
    for code, confidence in scored:
        key = gold_form(code)
        best[key] = max(confidence, best.get(key, confidence))
    return sorted(best, key=lambda code: (-best[code], code))


# --- MAP ------------------------------------------------------------------------------------


def average_precision(ranked: Sequence[str], gold: Collection[str]) -> float:
    """AP over all predictions: (1/|gold|) * sum of precision@k at each rank k holding a gold
    code. Duplicates are dropped before ranking (they take no rank). 0.0 when gold is empty."""
    relevant = set(gold)
    if not relevant:
        return 0.0
    hits = 0
    total = 0.0
    for rank, code in enumerate(unique(ranked), start=1):
        if code in relevant:
            hits += 1
            total += hits / rank
    return total / len(relevant)


def mean_average_precision(
    predicted: RankedCodes, gold: CaseCodes, *, predicted_cases_only: bool = False
) -> float:
    """Mean AP over the cases with gold codes; a case absent from ``predicted`` (or with no
    predictions) scores 0. Cases without gold are skipped.

    ``predicted_cases_only=True`` averages only over gold cases with at least one prediction,
    as the official CodiEsp script (trectools) does.
    """
    scores = [
        average_precision(predicted.get(case, ()), codes)
        for case, codes in gold.items()
        if codes and (predicted.get(case) or not predicted_cases_only)
    ]
    return sum(scores) / len(scores) if scores else 0.0


def edition_mapped(
    predicted: RankedCodes, gold: CaseCodes, is_code: Callable[[str], bool]
) -> dict[str, list[str]]:
    """Each case's ranking with every prediction that lies under a gold code the catalogue's
    edition cannot assign (``is_code`` false) renamed to that gold code.

    CodiEsp's gold was coded with an older edition: R51 (headache), M54.5 (low back pain),
    R05 (cough) and E87.2 (acidosis) were codes then and are categories now (R51.9, M54.50,
    R05.9, E87.20 ...), and its injury codes leave off the 7th character (T14.8 for
    T14.8XXA). A prediction under such a gold code names the same condition in the current
    edition; this ranking lets MAP count it. Everything else is scored as it stands.
    """
    out: dict[str, list[str]] = {}
    for case, codes in predicted.items():
        older = [code for code in gold.get(case, ()) if not is_code(code)]
        out[case] = [
            next((g for g in older if code != g and code.startswith(g)), code) for code in codes
        ]
    return out


# --- precision, recall, F1 ------------------------------------------------------------------


@dataclass(frozen=True)
class Confusion:
    """True positive, false positive and false negative counts; a ratio with a zero
    denominator is 0.0."""

    tp: int = 0
    fp: int = 0
    fn: int = 0

    def __add__(self, other: Confusion) -> Confusion:
        return Confusion(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)

    @property
    def precision(self) -> float:
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float:
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def f1(self) -> float:
        return _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)


@dataclass(frozen=True)
class PRF:
    precision: float
    recall: float
    f1: float


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else 0.0


def _case_ids(predicted: CaseCodes, gold: CaseCodes) -> list[str]:
    return unique([*gold, *predicted])


def case_confusion(predicted: Collection[str], gold: Collection[str]) -> Confusion:
    """Counts for one case, each distinct code once."""
    pred, true = set(predicted), set(gold)
    return Confusion(tp=len(pred & true), fp=len(pred - true), fn=len(true - pred))


def micro_confusion(predicted: CaseCodes, gold: CaseCodes) -> Confusion:
    """Counts summed over every case in either mapping (micro averaging)."""
    total = Confusion()
    for case in _case_ids(predicted, gold):
        total += case_confusion(predicted.get(case, ()), gold.get(case, ()))
    return total


def label_confusions(predicted: CaseCodes, gold: CaseCodes) -> dict[str, Confusion]:
    """Counts per code label, over every label in gold or predictions, sorted by label."""
    counts: dict[str, Confusion] = {}
    for case in _case_ids(predicted, gold):
        pred, true = set(predicted.get(case, ())), set(gold.get(case, ()))
        for code in pred | true:
            hit = Confusion(tp=int(code in pred and code in true))
            miss = Confusion(fp=int(code not in true), fn=int(code not in pred))
            counts[code] = counts.get(code, Confusion()) + hit + miss
    return dict(sorted(counts.items()))


def macro_prf(predicted: CaseCodes, gold: CaseCodes) -> PRF:
    """Per-label precision, recall and F1 averaged over every label in gold or predictions.

    Macro F1 is the mean of the per-label F1 scores (not the F1 of macro P and R); a label
    never predicted has precision 0, one never in gold has recall 0 (sklearn's
    ``zero_division=0``). All zero when there are no labels.
    """
    labels = list(label_confusions(predicted, gold).values())
    if not labels:
        return PRF(0.0, 0.0, 0.0)
    n = len(labels)
    return PRF(
        precision=sum(c.precision for c in labels) / n,
        recall=sum(c.recall for c in labels) / n,
        f1=sum(c.f1 for c in labels) / n,
    )


# --- candidate recall -----------------------------------------------------------------------


def _level_key(level: Level) -> Callable[[str], str]:
    return gold_form if level == "exact" else category_form


def candidate_hits(
    candidates: Sequence[Sequence[str]], gold: Collection[str], k: int, *, level: Level = "exact"
) -> int:
    """How many distinct gold codes of one case are among any span's top-k candidates.

    ``candidates`` holds one ranked list per span. At ``level="category"`` codes are compared
    by their three-character category, so each gold code whose category was retrieved counts.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    key = _level_key(level)
    found = {key(code) for ranked in candidates for code in ranked[:k]}
    return sum(1 for code in unique(gold) if key(code) in found)


def candidate_recall(
    candidates: Mapping[str, Sequence[Sequence[str]]],
    gold: CaseCodes,
    k: int,
    *,
    level: Level = "exact",
) -> float:
    """Share of (case, gold code) pairs found among the case's spans' top-k candidates."""
    hits = sum(
        candidate_hits(candidates.get(case, ()), codes, k, level=level)
        for case, codes in gold.items()
    )
    return _ratio(hits, gold_pairs(gold))


# --- gold standard --------------------------------------------------------------------------


def gold_pairs(gold: CaseCodes) -> int:
    """Distinct (case, code) pairs in the gold standard."""
    return sum(len(set(codes)) for codes in gold.values())


def invalid_gold(gold: CaseCodes, is_valid: Callable[[str], bool] = always_valid) -> list[str]:
    """Gold codes that fail ``is_valid``, one entry per (case, code) pair, sorted.

    They stay in every denominator (the shared task scored them, so a system can only miss
    them); this list says how many there were.
    """
    return sorted(code for codes in gold.values() for code in set(codes) if not is_valid(code))
