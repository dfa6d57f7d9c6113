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

With note weights (the ``note`` section of a weights file) a second pass re-ranks at the level of
the note: every code that some span may produce (:func:`icdcoder.shared.context.context_reason`)
gets one note confidence from how its spans scored (:data:`NOTE_FEATURES`): the best and second-best
span confidence, how many spans put it first, how many retrieved it, its memory votes; whether it is
a symptom code (chapter R, which coding rules leave out when a diagnosis explains the symptom) or an
unspecified one; how much of its text the whole note contains; and how the most similar coded notes
of the example memory vote (``similar_notes``) and what a classifier learnt from all of them says
(``classified``, ``classifier``); how it stands against the note's other codes of its category
(``sibling_gap``, ``siblings``), its length, and how many coded notes carry it (``coded_notes``).
The model is logistic weights or boosted trees (:mod:`icdcoder.services.verifier.boosted`). The
note's codes are ranked by that confidence and cut to ``max_codes_per_note``; each keeps the spans
that ranked it among their first ``max_suggestions_per_span`` as its evidence."""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from icdcoder.shared.context import context_reason, contextual_text
from icdcoder.shared.messages import (
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


class NoteVotes(Protocol):
    """What the memory's coded notes say about each code for a note's text: the votes of the
    most similar notes, in [0, 1] (``similar_notes``), or a note classifier's log-odds
    (``note_classifier``)."""

    def votes(self, text: str) -> Mapping[str, float]: ...


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
    return stem_coverage(stems(span_text), code_text)


def stems(text: str) -> frozenset[str]:
    return frozenset(_stem(w) for w in content_words(text))


def stem_coverage(text_stems: frozenset[str], code_text: str) -> float:
    """Share of the code text's content words (by stem) among ``text_stems``."""
    code = {_stem(w) for w in content_words(code_text) if w not in WEAK}
    if not code:
        return 0.0
    return len(code & text_stems) / len(code)


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
    #: Below this a code is not even suggested for review.
    review_threshold: float = 0.02
    max_codes_per_span: int = 1
    max_codes_per_note: int = 40

    @classmethod
    def from_json(cls, text: str, *, note: bool = False) -> OperatingPoint:
        """The file's ``operating_point``; with ``note``, the one of its ``note`` section (the
        re-ranker's confidence is cut in its own place)."""
        data = json.loads(text)
        if note:
            data = data.get("note") or {}
        point = data.get("operating_point") or {}
        default = cls()
        return cls(
            accept_threshold=float(point.get("accept_threshold", default.accept_threshold)),
            review_threshold=float(point.get("review_threshold", default.review_threshold)),
            max_codes_per_span=int(point.get("max_codes_per_span", default.max_codes_per_span)),
            max_codes_per_note=int(point.get("max_codes_per_note", default.max_codes_per_note)),
        )


NOTE_FEATURES = (
    "best",
    "second",
    "spans_first",
    "spans",
    "memory_votes",
    "memory_score",
    "score",
    "coverage",
    "symptom",
    "unspecified",
    "note_coverage",
    "similar_notes",
    "classified",
    "classifier",
    "sibling_gap",
    "siblings",
    "code_length",
    "coded_notes",
)
#: ``sibling_gap`` when no other code of the note shares the code's category.
NO_SIBLING = 5.0


@dataclass(frozen=True)
class NoteWeights:
    """Logistic-regression weights of the note-level re-ranker over :data:`NOTE_FEATURES`."""

    bias: float
    weights: tuple[float, ...]

    @classmethod
    def from_json(cls, text: str) -> NoteWeights | None:
        """The ``note`` section of a weights file, or None when it has none."""
        data = json.loads(text).get("note")
        if not data:
            return None
        missing = [name for name in ("bias", *NOTE_FEATURES) if name not in data]
        if missing:
            raise ValueError(f"note weights lack {', '.join(missing)}")
        return cls(float(data["bias"]), tuple(float(data[name]) for name in NOTE_FEATURES))

    def confidence(self, values: Sequence[float]) -> float:
        z = self.bias + sum(w * f for w, f in zip(self.weights, values, strict=True))
        return 1.0 / (1.0 + math.exp(-z))

    def confidences(self, rows: Sequence[Sequence[float]]) -> list[float]:
        return [self.confidence(values) for values in rows]


class NoteModel(Protocol):
    """The note-level re-ranker: one confidence per row of :data:`NOTE_FEATURES`."""

    def confidences(self, rows: Sequence[Sequence[float]]) -> list[float]: ...


def note_model_from_json(text: str) -> NoteModel | None:
    """The re-ranker of a weights file's ``note`` section: its boosted trees where it has them
    (``trees``), else its logistic weights; None without a ``note`` section."""
    data = json.loads(text).get("note")
    if not data:
        return None
    if "trees" in data:
        from icdcoder.services.verifier.boosted import BoostedTrees

        if data.get("features", list(NOTE_FEATURES)) != list(NOTE_FEATURES):
            raise ValueError("note trees were fitted on other features than NOTE_FEATURES")
        return BoostedTrees.from_json(data["trees"], n_features=len(NOTE_FEATURES))
    return NoteWeights.from_json(text)


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
    #: The note-level re-ranker; None: each span's verdicts stand on their own.
    note_weights: NoteModel | None = None
    #: With the re-ranker: how many of the note's codes are kept (accepted or for review).
    max_codes_per_note: int = 40
    #: With the re-ranker: the votes of similar coded notes (None: every vote is 0).
    similar_notes: NoteVotes | None = None
    #: With the re-ranker: a note classifier's log-odds per code (None: no code is modelled).
    note_classifier: NoteVotes | None = None
    #: With the re-ranker: how many of the memory's coded notes carry each code (empty: none).
    coded_notes: Mapping[str, float] = field(default_factory=dict)

    @property
    def info(self) -> VerifierInfo:
        return VerifierInfo(backend="similarity")

    async def verify(self, note: RetrievedNote) -> VerifiedNote:
        return self.verify_sync(note)

    def verify_sync(self, note: RetrievedNote) -> VerifiedNote:
        started = time.perf_counter()
        spans_per_code = note_support(note.items, self.considered)
        if self.note_weights is None:
            verdicts = [v for item in note.items for v in self.judge(item, spans_per_code)]
        else:
            verdicts = self.judge_note(note, spans_per_code, self.note_weights)
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
        read_as = contextual_text(item.span) or item.span.text
        verdicts: list[Verdict] = []
        for rank, (conf, cand, _) in enumerate(self.score_span(item, spans_per_code or {})):
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

    def score_span(
        self, item: SpanCandidates, spans_per_code: Mapping[str, int]
    ) -> list[tuple[float, Candidate, tuple[float, ...]]]:
        """The span's considered candidates with their confidence and features, best first."""
        cands = item.candidates[: self.considered]
        read_as = contextual_text(item.span) or item.span.text
        scored = []
        for i, cand in enumerate(cands):
            values = features(read_as, cands, i, spans_per_code)
            scored.append((self.confidence(values), cand, values))
        scored.sort(key=lambda row: (-row[0], row[1].code))
        return scored

    def note_rows(
        self, note: RetrievedNote, spans_per_code: Mapping[str, int]
    ) -> dict[str, CodeInNote]:
        """What the note's spans say about each code they may produce (context allowing)."""
        rows: dict[str, CodeInNote] = {}
        note_stems = stems(note.text)
        votes = self.similar_notes.votes(note.text) if self.similar_notes else {}
        classified = self.note_classifier.votes(note.text) if self.note_classifier else {}
        for item in note.items:
            for rank, (conf, cand, values) in enumerate(self.score_span(item, spans_per_code)):
                if context_reason(item.span, cand.code) is not None:
                    continue
                row = rows.get(cand.code)
                if row is None:
                    row = rows[cand.code] = CodeInNote(cand, note_stems)
                    row.similar_notes = votes.get(cand.code, 0.0)
                    row.classifier = classified.get(cand.code)
                    row.coded_notes = self.coded_notes.get(cand.code.upper(), 0.0)
                row.add(item, rank, conf, cand, values, self.max_suggestions_per_span)
        _compare_siblings(rows.values())
        return rows

    def judge_note(
        self, note: RetrievedNote, spans_per_code: Mapping[str, int], note_weights: NoteModel
    ) -> list[Verdict]:
        """Verdicts from the note-level re-ranker: one confidence per code, on its evidence."""
        rows = self.note_rows(note, spans_per_code)
        confidences = note_weights.confidences([row.features() for row in rows.values()])
        ranked = sorted(zip(confidences, rows, strict=True), key=lambda pair: (-pair[0], pair[1]))
        verdicts: list[Verdict] = []
        for position, (conf, code) in enumerate(ranked):
            decision = self._decide(conf) if position < self.max_codes_per_note else "reject"
            if decision == "reject":
                continue
            row = rows[code]
            for item in row.evidence():
                read_as = contextual_text(item.span) or item.span.text
                justification = justify(read_as, row.candidates[item.span.span_id], decision)
                if len(row.spans) > 1:
                    justification += f" {len(row.spans)} spans of the note retrieved it."
                if row.similar_notes > 0:
                    # how much, never which: the other notes' text stays out of the output
                    justification += (
                        f" The most similar coded notes vote {row.similar_notes:.2f} for it."
                    )
                if row.classifier is not None:
                    justification += (
                        f" The classifier of coded notes gives it log-odds {row.classifier:+.1f}."
                    )
                verdicts.append(
                    Verdict(
                        span_id=item.span.span_id,
                        code=code,
                        decision=decision,
                        confidence=round(conf, 4),
                        justification=justification,
                    )
                )
        return verdicts

    def _decide(self, conf: float) -> Decision:
        if conf >= self.accept_threshold:
            return "accept"
        if conf >= self.review_threshold:
            return "review"
        return "reject"


class CodeInNote:
    """One code's standing in a note: its spans' confidences and the features they add up to."""

    def __init__(self, first: Candidate, note_stems: frozenset[str]) -> None:
        self.code = first.code
        self.description = first.description
        self.note_stems = note_stems
        self.similar_notes = 0.0
        self.coded_notes = 0.0
        #: The other codes of the note in the same category, and how far this one's best span
        #: confidence (log-odds) stands above theirs (:func:`_compare_siblings`).
        self.siblings = 0
        self.sibling_gap = NO_SIBLING
        #: The note classifier's log-odds, None when it has no model for the code.
        self.classifier: float | None = None
        self.confidences: list[float] = []
        self.spans: list[SpanCandidates] = []
        self.candidates: dict[str, Candidate] = {}
        self.first = 0
        self.suggested: list[SpanCandidates] = []
        self.memory_votes = 0
        self.memory_score = 0.0
        self.score = 0.0
        self.coverage = 0.0

    def add(
        self,
        item: SpanCandidates,
        rank: int,
        conf: float,
        cand: Candidate,
        values: Sequence[float],
        suggestions: int,
    ) -> None:
        self.confidences.append(conf)
        self.spans.append(item)
        self.candidates[item.span.span_id] = cand
        self.first += rank == 0
        if rank < suggestions:
            self.suggested.append(item)
        named = dict(zip(FEATURES, values, strict=True))
        self.memory_votes = max(self.memory_votes, int(named["memory_votes"]))
        self.memory_score = max(self.memory_score, named["memory_score"])
        self.score = max(self.score, named["score"])
        self.coverage = max(self.coverage, named["coverage"])

    def features(self) -> tuple[float, ...]:
        """The :data:`NOTE_FEATURES`: span confidences enter as log-odds."""
        ordered = sorted(self.confidences, reverse=True)
        second = ordered[1] if len(ordered) > 1 else 0.0
        return (
            _logit(ordered[0]),
            _logit(second),
            math.log1p(self.first),
            math.log1p(len(self.spans)),
            float(self.memory_votes),
            self.memory_score,
            self.score,
            self.coverage,
            float(self.code.upper().startswith("R")),
            float("unspecified" in self.description.lower()),
            self.note_coverage(),
            self.similar_notes,
            float(self.classifier is not None),
            self.classifier or 0.0,
            self.sibling_gap,
            math.log1p(self.siblings),
            float(len(self.code.replace(".", ""))),
            math.log1p(self.coded_notes),
        )

    def best(self) -> float:
        return _logit(max(self.confidences))

    def note_coverage(self) -> float:
        """How much of the code's text the whole note contains (words may be in any span)."""
        texts = {self.description, *(c.matched for c in self.candidates.values())}
        return max(stem_coverage(self.note_stems, text) for text in texts)

    def evidence(self) -> list[SpanCandidates]:
        """The spans that ranked the code among their first suggestions, else its best span."""
        if self.suggested:
            return self.suggested
        best = max(range(len(self.spans)), key=lambda i: self.confidences[i])
        return [self.spans[best]]


def count_coded_notes(codes_per_note: Iterable[Iterable[str]]) -> dict[str, float]:
    """How many notes carry each code (catalogue form), for ``coded_notes``."""
    counts: dict[str, float] = {}
    for codes in codes_per_note:
        for code in {code.upper() for code in codes}:
            counts[code] = counts.get(code, 0.0) + 1.0
    return counts


def _compare_siblings(rows: Iterable[CodeInNote]) -> None:
    """Set each row's ``siblings`` and ``sibling_gap`` from the note's other codes of its
    category (the first three characters): E11.9 beside E11.8 competes for one condition."""
    by_category: dict[str, list[CodeInNote]] = {}
    for row in rows:
        by_category.setdefault(row.code[:3].upper(), []).append(row)
    for group in by_category.values():
        bests = [row.best() for row in group]
        for i, row in enumerate(group):
            others = bests[:i] + bests[i + 1 :]
            row.siblings = len(others)
            row.sibling_gap = bests[i] - max(others) if others else NO_SIBLING


def _logit(p: float, bound: float = 12.0) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return max(-bound, min(bound, math.log(p / (1 - p))))


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
