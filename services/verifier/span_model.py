"""The span model: how well one retrieved candidate fits one span, as a calibrated confidence.

Features of a candidate among its span's candidates (:data:`FEATURES`, in this order):

- ``score``: the retrieval similarity of the best-matching catalogue text;
- ``coverage``: the share of the matched text's content words that the span contains;
- ``margin``: how far ``score`` stands above the span's next different candidate;
- ``memory_score``: the similarity of the nearest confirmed example of the code (0 without an
  example memory);
- ``memory_votes``: how many of the span's nearest examples carry the code;
- ``support``: log(1 + how many other spans of the note also retrieved the code).

``confidence = sigmoid(bias + sum(weight[f] * f))``, weights fitted by logistic regression on
a coded corpus (``icdcoder train``, :mod:`icdcoder.training`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from icdcoder.services.verifier.logodds import sigmoid
from icdcoder.shared.messages import Candidate, SpanCandidates
from icdcoder.shared.text import stem_coverage, stems

FEATURES = ("score", "coverage", "margin", "memory_score", "memory_votes", "support")


@dataclass(frozen=True)
class SpanWeights:
    """Logistic-regression weights over :data:`FEATURES`; the defaults are a priori ones."""

    bias: float = -7.5
    score: float = 8.0
    coverage: float = 2.5
    margin: float = 4.0
    memory_score: float = 0.0
    memory_votes: float = 0.0
    support: float = 0.0

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SpanWeights:
        """``bias`` and the score features are required, the memory features default to 0."""
        required = ("bias", "score", "coverage", "margin")
        missing = [name for name in required if name not in data]
        if missing:
            raise ValueError(f"similarity weights lack {', '.join(missing)}")
        return cls(**{name: float(data.get(name, 0.0)) for name in ("bias", *FEATURES)})

    @cached_property
    def vector(self) -> tuple[float, ...]:
        """The weights in :data:`FEATURES` order (computed once: read for every candidate)."""
        return tuple(getattr(self, name) for name in FEATURES)

    def confidence(self, values: Sequence[float]) -> float:
        return sigmoid(self.bias + sum(w * f for w, f in zip(self.vector, values, strict=True)))


def note_support(items: Sequence[SpanCandidates], considered: int) -> dict[str, int]:
    """How many of the note's spans have each code among their first ``considered`` candidates
    (negated spans not counted: a finding ruled out supports no code)."""
    counts: dict[str, int] = {}
    for item in items:
        if item.span.context.negated:
            continue
        for code in {c.code for c in item.candidates[:considered]}:
            counts[code] = counts.get(code, 0) + 1
    return counts


def features(
    span_text: str,
    cands: Sequence[Candidate],
    index: int,
    spans_per_code: Mapping[str, int],
) -> tuple[float, ...]:
    """The :data:`FEATURES` of candidate ``index`` among a span's candidates, in that order."""
    return span_features(span_text, cands, spans_per_code)[index]


def span_features(
    span_text: str, cands: Sequence[Candidate], spans_per_code: Mapping[str, int]
) -> list[tuple[float, ...]]:
    """The :data:`FEATURES` of each of a span's candidates, in their order."""
    span_stems = stems(span_text)
    scores = [c.score for c in cands]
    # a candidate's runner-up is the best score among the others: the best candidate's is the
    # second best, everyone else's the best
    best = max(range(len(scores)), key=scores.__getitem__, default=0)
    top = scores[best] if scores else 0.0
    second = max((s for j, s in enumerate(scores) if j != best), default=0.0)
    rows: list[tuple[float, ...]] = []
    for i, cand in enumerate(cands):
        cov = max(
            stem_coverage(span_stems, cand.matched), stem_coverage(span_stems, cand.description)
        )
        others = max(spans_per_code.get(cand.code, 1) - 1, 0)
        rows.append(
            (
                cand.score,
                cov,
                cand.score - (second if i == best else top),
                cand.memory_score,
                float(cand.memory_votes),
                math.log1p(others),
            )
        )
    return rows
