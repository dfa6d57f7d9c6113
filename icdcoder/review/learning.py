"""What the review page teaches: reviewed notes as an example memory and as a training corpus.

- :func:`memory_records`: a reviewed note's confirmed codes (accepted, or added) with their
  evidence spans as memory examples (``{"code", "text", "source"}``), its rejected codes with
  the system's evidence as rejected examples (``{"rejected", ...}``), and the note with its
  confirmed codes as a coded note (``{"codes", "text", "source"}``), the formats of
  ``icdcoder memory codiesp`` (:mod:`icdcoder.shared.memory`): the file is a drop-in for
  ``icdcoder pack build --memory``.
- :class:`ReviewedCorpus`: the reviewed notes as a :class:`~icdcoder.training.corpus.Corpus`
  for ``icdcoder train --store``: each note's confirmed codes are its gold, so a rejected code
  is a negative and an added code a positive of the refit re-ranker.

Every record's source is ``review:<note id>``, so that a note's own examples and coded note are
left out when it is fitted on (the training code keys them by the source's tail).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from icdcoder.shared.memory import Example, MemoryNote, RejectedExample
from icdcoder.shared.store.review import ReviewState, ReviewStore
from icdcoder.training.corpus import CodedCase

SOURCE = "review"


@dataclass
class ExportStats:
    notes: int = 0
    without_text: int = 0
    examples: int = 0
    rejected: int = 0
    coded_notes: int = 0
    added_without_evidence: int = 0


def memory_records(
    states: Iterable[ReviewState], stats: ExportStats | None = None
) -> list[Example | MemoryNote | RejectedExample]:
    """Examples, rejected examples and coded notes of the reviewed notes (see the module)."""
    stats = stats if stats is not None else ExportStats()
    examples: dict[tuple[str, str, str], Example] = {}
    rejected: dict[tuple[str, str, str], RejectedExample] = {}
    notes: list[MemoryNote] = []
    for state in states:
        stats.notes += 1
        text = state.text
        if not text:
            stats.without_text += 1
            continue
        source = f"{SOURCE}:{state.note_id}"
        current = state.current()
        evidence = {c.code: [(e.start, e.end) for e in c.evidence] for c in state.coded.codes}
        final = state.final_codes()
        for code in final:
            decided = current.get(code)
            spans = list(evidence.get(code, []))
            if decided is not None and decided.action == "add":
                spans = list(decided.evidence) + spans
                if not spans:
                    stats.added_without_evidence += 1
            for start, end in spans:
                span_text = text[start:end].strip()
                if span_text:
                    examples.setdefault(
                        (state.note_id, span_text, code),
                        Example(code=code, text=span_text, source=source),
                    )
        for code in state.rejected_codes():
            for start, end in evidence.get(code, []):
                span_text = text[start:end].strip()
                if span_text:
                    rejected.setdefault(
                        (state.note_id, span_text, code),
                        RejectedExample(rejected=code, text=span_text, source=source),
                    )
        if final:
            notes.append(MemoryNote(codes=tuple(final), text=text, source=source))
    stats.examples, stats.rejected, stats.coded_notes = len(examples), len(rejected), len(notes)
    return [*examples.values(), *rejected.values(), *notes]


def reviewed_cases(states: Iterable[ReviewState]) -> list[CodedCase]:
    """Each reviewed note with text as a coded case: its confirmed codes are its gold."""
    return [
        CodedCase(state.note_id, state.text, tuple(state.final_codes()))
        for state in states
        if state.text
    ]


@dataclass(frozen=True)
class ReviewedCorpus:
    """The store's reviewed notes (of ``pack``'s results, or any pack's) as a corpus."""

    reviews: ReviewStore
    label: str = "store"
    _cases: list[CodedCase] = field(default_factory=list, compare=False)

    @property
    def name(self) -> str:
        return f"reviewed-{self.label}"

    @property
    def description(self) -> str:
        return f"reviewed notes ({self.label})"

    @property
    def reported(self) -> bool:
        return False

    def cases(self) -> Sequence[CodedCase]:
        if not self._cases:
            self._cases.extend(reviewed_cases(self.reviews.reviewed()))
        return self._cases
