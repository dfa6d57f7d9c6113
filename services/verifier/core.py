"""Verifier core: the verifier interface and the deterministic ``similarity`` backend.

A verifier reads each span's retrieved candidates and decides, per candidate it considers,
accept / review / reject with a confidence and a one-sentence justification. It can only
choose among the retrieved candidates. The ``similarity`` backend is the embedded default: no
model server, same input -> same output. It scores a candidate from these features:

- ``score``: the retrieval similarity of the best-matching catalogue text;
- ``coverage``: the share of the matched text's content words that the span contains;
- ``margin``: how far ``score`` stands above the span's next different candidate;
- ``memory_score``: the similarity of the nearest confirmed example of the code (0 without an
  example memory);
- ``memory_votes``: how many of the span's nearest examples carry the code;
- ``support``: log(1 + how many other spans of the note also retrieved the code).

``confidence = sigmoid(bias + sum(weight[f] * f))``, with weights fitted by logistic
regression (``bench/levers.py fit``).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from shared.context import contextual_text
from shared.messages import (
    Candidate,
    Decision,
    RetrievedNote,
    SpanCandidates,
    Verdict,
    VerifiedNote,
    VerifierInfo,
)

_WORD_RE = re.compile(r"[a-z0-9]+")
STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "for",
        "from",
        "has",
        "have",
        "in",
        "is",
        "it",
        "of",
        "on",
        "or",
        "the",
        "to",
        "was",
        "were",
        "with",
        "without",
        "which",
        "who",
        "whom",
        "this",
        "that",
        "these",
        "those",
        "his",
        "her",
        "their",
        "its",
        "patient",
        "pt",
        "unspecified",
        "other",
        "nos",
        "specified",
        "type",
        "due",
        "than",
        "into",
    ]
)
# Words too generic to count as evidence on their own.
WEAK = frozenset(["disease", "disorder", "condition", "syndrome"])


class Verifier(Protocol):
    @property
    def info(self) -> VerifierInfo: ...

    async def verify(self, note: RetrievedNote) -> VerifiedNote: ...


def content_words(text: str) -> list[str]:
    return [w for w in _WORD_RE.findall(text.lower()) if w not in STOPWORDS]


def _stem(word: str) -> str:
    """A crude prefix stem so 'renal'/'kidney' stay apart but 'calculi'/'calculus' meet."""
    return word[:6] if len(word) > 6 else word


def shared_words(span_text: str, code_text: str) -> list[str]:
    """Content words of ``span_text`` that also occur (by stem) in ``code_text``, in span order."""
    code_stems = {_stem(w) for w in content_words(code_text)}
    seen: dict[str, None] = {}
    for word in content_words(span_text):
        if _stem(word) in code_stems:
            seen.setdefault(word)
    return list(seen)


def coverage(span_text: str, code_text: str) -> float:
    """Share of the code text's content words (by stem) that the span contains."""
    code = {_stem(w) for w in content_words(code_text) if w not in WEAK}
    if not code:
        return 0.0
    span = {_stem(w) for w in content_words(span_text)}
    return len(code & span) / len(code)


FEATURES = ("score", "coverage", "margin", "memory_score", "memory_votes", "support")


@dataclass(frozen=True)
class SimilarityWeights:
    """Logistic-regression weights; defaults are a priori, ``from_json`` loads fitted ones."""

    bias: float = -7.5
    score: float = 8.0
    coverage: float = 2.5
    margin: float = 4.0
    memory_score: float = 0.0
    memory_votes: float = 0.0
    support: float = 0.0

    @classmethod
    def from_json(cls, text: str) -> SimilarityWeights:
        """Weights from JSON: ``bias`` and the score features are required, the rest default 0."""
        data = json.loads(text)
        required = ("bias", "score", "coverage", "margin")
        missing = [name for name in required if name not in data]
        if missing:
            raise ValueError(f"similarity weights lack {', '.join(missing)}")
        names = ("bias", *FEATURES)
        return cls(**{name: float(data.get(name, 0.0)) for name in names})

    def vector(self) -> tuple[float, ...]:
        return tuple(getattr(self, name) for name in FEATURES)


@dataclass(frozen=True)
class OperatingPoint:
    """Where a fit's calibrated confidence is cut: chosen on CodiEsp dev for that fit, so it
    travels in the weights file (``operating_point``) and moves when the weights are refitted."""

    accept_threshold: float = 0.10
    max_codes_per_span: int = 1

    @classmethod
    def from_json(cls, text: str) -> OperatingPoint:
        point = json.loads(text).get("operating_point") or {}
        default = cls()
        return cls(
            accept_threshold=float(point.get("accept_threshold", default.accept_threshold)),
            max_codes_per_span=int(point.get("max_codes_per_span", default.max_codes_per_span)),
        )


@dataclass(frozen=True)
class SimilarityVerifier:
    """Deterministic verifier from retrieval scores, margins and term overlap."""

    accept_threshold: float = 0.62
    review_threshold: float = 0.50
    max_codes_per_span: int = 1
    #: Further candidates of a span above ``review_threshold`` are kept as review suggestions.
    max_suggestions_per_span: int = 3
    considered: int = 10
    weights: SimilarityWeights = SimilarityWeights()

    @property
    def info(self) -> VerifierInfo:
        return VerifierInfo(backend="similarity")

    async def verify(self, note: RetrievedNote) -> VerifiedNote:
        return self.verify_sync(note)

    def verify_sync(self, note: RetrievedNote) -> VerifiedNote:
        started = time.perf_counter()
        spans_per_code = note_support(note.items, self.considered)
        verdicts = [v for item in note.items for v in self.judge(item, spans_per_code)]
        return VerifiedNote(
            note_id=note.note_id,
            text=note.text,
            catalogue_version=note.catalogue_version,
            items=note.items,
            verdicts=verdicts,
            verifier=self.info,
            timings={**note.timings, "verifier": time.perf_counter() - started},
        )

    def confidence(self, values: Sequence[float]) -> float:
        z = self.weights.bias + sum(
            w * f for w, f in zip(self.weights.vector(), values, strict=True)
        )
        return 1.0 / (1.0 + math.exp(-z))

    def judge(
        self, item: SpanCandidates, spans_per_code: Mapping[str, int] | None = None
    ) -> list[Verdict]:
        """Verdicts for the span's best few candidates: accepted/reviewed first, then rejects."""
        cands = item.candidates[: self.considered]
        if not cands:
            return []
        read_as = contextual_text(item.span) or item.span.text
        counts = spans_per_code or {}
        scored = [
            (self.confidence(features(read_as, cands, i, counts)), c) for i, c in enumerate(cands)
        ]
        scored.sort(key=lambda pair: (-pair[0], pair[1].code))
        verdicts: list[Verdict] = []
        for rank, (conf, cand) in enumerate(scored):
            decision = self._decide(conf) if rank < self.max_codes_per_span else "reject"
            if decision == "reject" and rank < self.max_suggestions_per_span:
                decision = "review" if conf >= self.review_threshold else "reject"
            verdicts.append(
                Verdict(
                    span_id=item.span.span_id,
                    code=cand.code,
                    decision=decision,
                    confidence=round(conf, 4),
                    justification=justify(read_as, cand, decision),
                )
            )
        return verdicts

    def _decide(self, conf: float) -> Decision:
        if conf >= self.accept_threshold:
            return "accept"
        if conf >= self.review_threshold:
            return "review"
        return "reject"


def note_support(items: Sequence[SpanCandidates], considered: int) -> dict[str, int]:
    """How many of the note's spans have each code among their first ``considered`` candidates."""
    counts: dict[str, int] = {}
    for item in items:
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
    cand = cands[index]
    cov = max(coverage(span_text, cand.matched), coverage(span_text, cand.description))
    runner_up = max((c.score for j, c in enumerate(cands) if j != index), default=0.0)
    others = max(spans_per_code.get(cand.code, 1) - 1, 0)
    return (
        cand.score,
        cov,
        cand.score - runner_up,
        cand.memory_score,
        float(cand.memory_votes),
        math.log1p(others),
    )


def justify(span_text: str, cand: Candidate, decision: Decision) -> str:
    verb = {"accept": "supports", "review": "may support", "reject": "does not support"}[decision]
    parts: list[str] = []
    if cand.matched:
        words = shared_words(span_text, f"{cand.matched} {cand.description}")
        said = ", ".join(f"'{w}'" for w in words[:6]) if words else "no shared words"
        parts.append(f"{said} match '{cand.matched}' (similarity {cand.score:.2f})")
    if cand.memory_votes:
        plural = "s" if cand.memory_votes > 1 else ""
        # The example's text comes from another note: it is not repeated in this note's output.
        parts.append(
            f"{cand.memory_votes} confirmed example{plural} among the nearest "
            f"(similarity {cand.memory_score:.2f})"
        )
    return f"Span {verb} {cand.code} ({cand.description}): {'; '.join(parts)}."
