"""The note model: one confidence per code of a note, from everything the note says about it.

Every code that some span may produce (:func:`icdcoder.shared.context.context_reason`) gets one
row of :data:`NOTE_FEATURES`: the best and second-best span confidence (as log-odds), how many
spans put it first and how many retrieved it, its memory votes and similarities; whether it is a
symptom code (chapter R, which coding rules leave out when a diagnosis explains the symptom) or
an unspecified one; how much of its text the whole note contains; how the most similar coded
notes of the example memory vote (``similar_notes``) and what a classifier learnt from them says
(``classified``, ``classifier``); how it stands against the note's other codes of its category
(``sibling_gap``, ``siblings``), its length, and how many coded notes carry it (``coded_notes``);
which share of the words its title asks for the note states (``documented``:
:func:`~icdcoder.shared.guidelines.documented_share`), and how that share and
``note_coverage`` stand against the best of its siblings' (``documented_gap``,
``coverage_gap``): site, laterality or type that picks the leaf is often written in another
sentence than the span that names the condition. How its spans matched it: the largest share of
one span's words its texts hold (``explained``), the share of the words its best-stated matched
text asks for, an Alphabetic Index path as a coder looks it up (``path_documented``), its best
rank among a span's candidates (``best_rank``), its most confident span's length in words
(``span_words``) and whether that span matched its title rather than an inclusion term or an
Index path (``title_match``). And where its category stands in the classification
(``category``: :func:`category_place`): trees learn from it which blocks of codes a coded corpus
assigns.

The model over those rows is logistic weights or boosted trees
(:mod:`icdcoder.services.verifier.boosted`), both fitted by ``icdcoder train``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from icdcoder.services.verifier.logodds import logit, sigmoid
from icdcoder.services.verifier.span_model import FEATURES
from icdcoder.shared.guidelines import documented_share, path_documented_share
from icdcoder.shared.messages import Candidate, SpanCandidates
from icdcoder.shared.text import stem_coverage, stems

#: How a span matched the code (stop 33).
MATCH_FEATURES = ("explained", "path_documented", "best_rank", "span_words", "title_match")
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
    "documented",
    "documented_gap",
    "coverage_gap",
    *MATCH_FEATURES,
    "category",
)
#: Features a weights file written before them may lack: its model reads them as absent
#: (trees never split on them; logistic weights are 0), so older packs keep their scores.
LATER_NOTE_FEATURES = frozenset(
    {"documented", "documented_gap", "coverage_gap", *MATCH_FEATURES, "category"}
)
#: ``sibling_gap`` when no other code of the note shares the code's category.
NO_SIBLING = 5.0
_SCORE, _COVERAGE, _MEMORY_SCORE, _MEMORY_VOTES = (
    FEATURES.index(name) for name in ("score", "coverage", "memory_score", "memory_votes")
)


class NoteModel(Protocol):
    """The note-level re-ranker: one confidence per row of :data:`NOTE_FEATURES`."""

    def confidences(self, rows: Sequence[Sequence[float]]) -> list[float]: ...


@dataclass(frozen=True)
class LogisticNoteModel:
    """Logistic-regression weights over :data:`NOTE_FEATURES`."""

    bias: float
    weights: tuple[float, ...]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LogisticNoteModel:
        required = [name for name in NOTE_FEATURES if name not in LATER_NOTE_FEATURES]
        missing = [name for name in ("bias", *required) if name not in data]
        if missing:
            raise ValueError(f"note weights lack {', '.join(missing)}")
        return cls(float(data["bias"]), tuple(float(data.get(name, 0.0)) for name in NOTE_FEATURES))

    def confidence(self, values: Sequence[float]) -> float:
        return sigmoid(self.bias + sum(w * f for w, f in zip(self.weights, values, strict=True)))

    def confidences(self, rows: Sequence[Sequence[float]]) -> list[float]:
        return [self.confidence(values) for values in rows]


def note_model_from_dict(data: Mapping[str, Any]) -> NoteModel:
    """The re-ranker of a weights file's ``note`` section: its boosted trees where it has them
    (``trees``, over the features the file lists), else its logistic weights. A file may lack
    :data:`LATER_NOTE_FEATURES` (one written before them), no other."""
    if "trees" in data:
        from icdcoder.services.verifier.boosted import BoostedTrees

        names = list(data.get("features", NOTE_FEATURES))
        unknown = [name for name in names if name not in NOTE_FEATURES]
        absent = set(NOTE_FEATURES) - set(names) - LATER_NOTE_FEATURES
        if unknown or absent or len(set(names)) != len(names):
            raise ValueError("note trees were fitted on other features than NOTE_FEATURES")
        columns = [NOTE_FEATURES.index(name) for name in names]
        return BoostedTrees.from_json(data["trees"], n_features=len(NOTE_FEATURES), columns=columns)
    return LogisticNoteModel.from_dict(data)


class CodeInNote:
    """One code's standing in a note: its spans' confidences and the features they add up to."""

    # a note makes hundreds of these: slots keep them small and quick to make
    __slots__ = (
        "_documented",
        "_note_coverage",
        "candidates",
        "classifier",
        "code",
        "coded_notes",
        "confidences",
        "coverage",
        "coverage_gap",
        "description",
        "documented_gap",
        "first",
        "memory_score",
        "memory_votes",
        "note_said",
        "note_stems",
        "ranks",
        "score",
        "sibling_gap",
        "siblings",
        "similar_notes",
        "spans",
        "suggested",
    )

    def __init__(
        self, first: Candidate, note_stems: frozenset[str], note_said: frozenset[str] = frozenset()
    ) -> None:
        self.code = first.code
        self.description = first.description
        self.note_stems = note_stems
        #: :func:`~icdcoder.shared.guidelines.said_stems` of the note.
        self.note_said = note_said
        self.similar_notes = 0.0
        self.coded_notes = 0.0
        #: The other codes of the note in the same category, and how far this one's best span
        #: confidence (log-odds) stands above theirs (:func:`compare_siblings`).
        self.siblings = 0
        self.sibling_gap = NO_SIBLING
        #: ``documented`` and ``note_coverage`` less their best sibling's (0 without siblings).
        self.documented_gap = 0.0
        self.coverage_gap = 0.0
        #: The note classifier's log-odds, None when it has no model for the code.
        self.classifier: float | None = None
        self.confidences: list[float] = []
        self.ranks: list[int] = []
        self.spans: list[SpanCandidates] = []
        self.candidates: dict[str, Candidate] = {}
        self.first = 0
        self.suggested: list[SpanCandidates] = []
        self.memory_votes = 0
        self.memory_score = 0.0
        self.score = 0.0
        self.coverage = 0.0
        # note_coverage() and documented(), once read (add() forgets them)
        self._note_coverage: float | None = None
        self._documented: float | None = None

    def add(
        self,
        item: SpanCandidates,
        rank: int,
        conf: float,
        cand: Candidate,
        values: Sequence[float],
        suggestions: int,
    ) -> None:
        """One span's say: its confidence in the code, at ``rank`` among its candidates."""
        self.confidences.append(conf)
        self.spans.append(item)
        self.candidates[item.span.span_id] = cand
        self.first += rank == 0
        self.ranks.append(rank)
        if rank < suggestions:
            self.suggested.append(item)
        # comparisons, not max(): a note adds a few hundred thousand of these
        if values[_MEMORY_VOTES] > self.memory_votes:
            self.memory_votes = int(values[_MEMORY_VOTES])
        if values[_MEMORY_SCORE] > self.memory_score:
            self.memory_score = values[_MEMORY_SCORE]
        if values[_SCORE] > self.score:
            self.score = values[_SCORE]
        if values[_COVERAGE] > self.coverage:
            self.coverage = values[_COVERAGE]
        self._note_coverage = self._documented = None

    def features(self) -> tuple[float, ...]:
        """The :data:`NOTE_FEATURES`: span confidences enter as log-odds."""
        ordered = sorted(self.confidences, reverse=True)
        best = self.spans[self.confidences.index(ordered[0])]
        second = ordered[1] if len(ordered) > 1 else 0.0
        return (
            logit(ordered[0]),
            logit(second),
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
            self.documented(),
            self.documented_gap,
            self.coverage_gap,
            self.explained(),
            self.path_documented(),
            float(min(self.ranks)),
            float(len(best.span.text.split())),
            float(self.candidates[best.span.span_id].matched == self.description),
            category_place(self.code),
        )

    def explained(self) -> float:
        """The largest share of one span's content words that the code's text holds."""
        best = 0.0
        for item in self.spans:
            said = stems(item.span.text)
            if not said:
                continue
            cand = self.candidates[item.span.span_id]
            held = stems(cand.matched) | stems(cand.description)
            best = max(best, len(said & held) / len(said))
        return best

    def path_documented(self) -> float:
        """The largest share of the words one of its matched texts asks for that the note
        states: an Index term path ("Hernia, hernial, hiatal") names K44.9 as a coder looks it
        up, where its title asks for "diaphragmatic" too."""
        return max(
            path_documented_share(text, self.note_said)
            for text in {self.description, *(c.matched for c in self.candidates.values())}
        )

    def best(self) -> float:
        return logit(max(self.confidences))

    def note_coverage(self) -> float:
        """How much of the code's text the whole note contains (words may be in any span)."""
        if self._note_coverage is None:
            texts = {self.description, *(c.matched for c in self.candidates.values())}
            self._note_coverage = max(stem_coverage(self.note_stems, text) for text in texts)
        return self._note_coverage

    def documented(self) -> float:
        """The share of the words the code's title asks for that the note states."""
        if self._documented is None:
            self._documented = documented_share(self.description, self.note_said)
        return self._documented

    def evidence(self) -> list[SpanCandidates]:
        """The spans that ranked the code among their first suggestions, else its best span."""
        if self.suggested:
            return self.suggested
        best = max(range(len(self.spans)), key=lambda i: self.confidences[i])
        return [self.spans[best]]


def category_place(code: str) -> float:
    """Where a code's category stands in the classification, as one number: its three
    characters read in base 11, the letter first (A = 0), a letter after it counting 10, after
    every digit (E11.9 -> 4 * 121 + 1 * 11 + 1 = 496; C4A after C49, QA0 after Q99). A block of
    categories is one range of places, which a tree splits off."""
    tens, units = (int(c) if c.isdigit() else 10 for c in code[1:3].upper())
    return float((ord(code[0].upper()) - ord("A")) * 121 + tens * 11 + units)


def count_coded_notes(codes_per_note: Iterable[Iterable[str]]) -> dict[str, float]:
    """How many notes carry each code (catalogue form), for ``coded_notes``."""
    counts: dict[str, float] = {}
    for codes in codes_per_note:
        for code in {code.upper() for code in codes}:
            counts[code] = counts.get(code, 0.0) + 1.0
    return counts


def compare_siblings(rows: Iterable[CodeInNote]) -> None:
    """Set each row's ``siblings`` and ``sibling_gap`` from the note's other codes of its
    category (the first three characters): E11.9 beside E11.8 competes for one condition."""
    by_category: dict[str, list[CodeInNote]] = {}
    for row in rows:
        by_category.setdefault(row.code[:3].upper(), []).append(row)
    for group in by_category.values():
        if len(group) == 1:
            continue
        bests = _others_best([row.best() for row in group])
        documented = _others_best([row.documented() for row in group])
        covered = _others_best([row.note_coverage() for row in group])
        for row, best, said, cover in zip(group, bests, documented, covered, strict=True):
            row.siblings = len(group) - 1
            row.sibling_gap = best
            row.documented_gap = said
            row.coverage_gap = cover


def _others_best(values: Sequence[float]) -> list[float]:
    """Each value less the largest of the others (two values at least)."""
    first = max(range(len(values)), key=values.__getitem__)
    top = values[first]
    second = max(v for i, v in enumerate(values) if i != first)
    return [v - (second if i == first else top) for i, v in enumerate(values)]
