"""Every model that crosses a stage boundary, in one place.

The pipeline moves one message per note (see README, "Message granularity"): each stage adds
its layer and passes the note on, so the aggregator sees the whole note at once and every
result is idempotent per ``note_id``.

    NoteIn -> SegmentedNote -> RetrievedNote -> VerifiedNote -> CodedNote

Patient text lives in these models (``text`` fields). It travels on the bus and lands in the
results; it never goes to logs.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

NOTE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,199}$"

Decision = Literal["accept", "reject", "review"]
ContextName = Literal["negated", "hypothetical", "family", "historical"]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ContextFlags(_Model):
    """What the text around a span says about it (ConText)."""

    negated: bool = False
    hypothetical: bool = False
    family: bool = False
    historical: bool = False

    def active(self) -> list[ContextName]:
        """The flags that are set, in a fixed order."""
        names: list[ContextName] = ["negated", "hypothetical", "family", "historical"]
        return [name for name in names if getattr(self, name)]


class Span(_Model):
    """A candidate span: ``note.text[start:end] == text`` always."""

    span_id: str
    start: int = Field(ge=0)
    end: int = Field(gt=0)
    text: str
    sentence_start: int = Field(ge=0)
    sentence_end: int = Field(gt=0)
    section: str = ""
    context: ContextFlags = ContextFlags()

    @model_validator(mode="after")
    def _ordered(self) -> Span:
        if not (self.sentence_start <= self.start < self.end <= self.sentence_end):
            raise ValueError("span must lie inside its sentence and have start < end")
        if len(self.text) != self.end - self.start:
            raise ValueError("span text length must equal end - start")
        return self


class NoteIn(_Model):
    """A note submitted for coding."""

    note_id: str = Field(pattern=NOTE_ID_PATTERN)
    text: str = Field(min_length=1)


class SegmentedNote(_Model):
    note_id: str = Field(pattern=NOTE_ID_PATTERN)
    text: str
    spans: list[Span]
    timings: dict[str, float] = {}

    @model_validator(mode="after")
    def _offsets_slice_text(self) -> SegmentedNote:
        for span in self.spans:
            if self.text[span.start : span.end] != span.text:
                raise ValueError(f"span {span.span_id} offsets do not slice the note text")
        return self


class Candidate(_Model):
    """A catalogue code retrieved for a span, with the catalogue text that matched best.

    ``score`` is the similarity to the code's best catalogue text (0.0 when only the example
    memory proposed the code). ``memory_score`` is the similarity to the nearest confirmed
    example of the code, ``memory_votes`` how many of the span's nearest examples carry it, and
    ``example`` that nearest example's text (see ``shared/memory.py``).
    """

    code: str
    description: str
    score: float
    matched: str
    memory_score: float = 0.0
    memory_votes: int = Field(default=0, ge=0)
    example: str = ""


class SpanCandidates(_Model):
    span: Span
    candidates: list[Candidate]


def _check_items(text: str, items: list[SpanCandidates]) -> None:
    seen: set[str] = set()
    for item in items:
        span = item.span
        if span.span_id in seen:
            raise ValueError(f"span {span.span_id} appears twice")
        seen.add(span.span_id)
        if text[span.start : span.end] != span.text:
            raise ValueError(f"span {span.span_id} offsets do not slice the note text")


class RetrievedNote(_Model):
    note_id: str = Field(pattern=NOTE_ID_PATTERN)
    text: str
    catalogue_version: str
    #: The model pack the candidates were retrieved with; later stages must use the same.
    pack: str = ""
    items: list[SpanCandidates]
    timings: dict[str, float] = {}

    @model_validator(mode="after")
    def _consistent(self) -> RetrievedNote:
        _check_items(self.text, self.items)
        return self


class Verdict(_Model):
    """A verifier's decision on one candidate code for one span."""

    span_id: str
    code: str
    decision: Decision
    confidence: float = Field(ge=0.0, le=1.0)
    justification: str


class VerifierInfo(_Model):
    """Which verifier produced the verdicts, for traceability."""

    backend: str
    model: str | None = None
    prompt_version: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


class VerifiedNote(_Model):
    note_id: str = Field(pattern=NOTE_ID_PATTERN)
    text: str
    catalogue_version: str
    pack: str = ""
    items: list[SpanCandidates]
    verdicts: list[Verdict]
    verifier: VerifierInfo
    timings: dict[str, float] = {}

    @model_validator(mode="after")
    def _consistent(self) -> VerifiedNote:
        """Every verdict is about a span of the note and one of that span's candidates: a
        verifier chooses among what was retrieved, never beyond."""
        _check_items(self.text, self.items)
        candidates = {item.span.span_id: {c.code for c in item.candidates} for item in self.items}
        for verdict in self.verdicts:
            codes = candidates.get(verdict.span_id)
            if codes is None:
                raise ValueError(f"a verdict names span {verdict.span_id}, which the note lacks")
            if verdict.code not in codes:
                raise ValueError(
                    f"a verdict names {verdict.code}, not a candidate of span {verdict.span_id}"
                )
        return self


class Evidence(_Model):
    span_id: str
    start: int
    end: int
    text: str
    section: str = ""


class CodeResult(_Model):
    code: str
    description: str
    confidence: float = Field(ge=0.0, le=1.0)
    decision: Literal["accept", "review"]
    justification: str
    evidence: list[Evidence]


class ExcludedSpan(_Model):
    """A span whose condition code was not assigned, and why (e.g. it was negated)."""

    span_id: str
    start: int
    end: int
    text: str
    code: str
    reason: str


class CodedNote(_Model):
    """The document's codes: the pipeline's result."""

    note_id: str = Field(pattern=NOTE_ID_PATTERN)
    catalogue_version: str
    #: The model pack that coded the note (``icdcoder pack info``).
    pack: str = ""
    #: SHA-256 of the note's text: with ``note_id``, the note version these codes are for.
    content_hash: str = ""
    codes: list[CodeResult]
    excluded: list[ExcludedSpan]
    verifier: VerifierInfo
    timings: dict[str, float] = {}


class DeadLetter(_Model):
    """A message a stage gave up on, kept with the reason so nothing is lost silently.

    ``payload`` is the entry's message as it was: text, or base64 of its bytes when they were
    not UTF-8 (``payload_encoding``), so a replay sends exactly what was received.
    """

    stage: str
    stream: str
    message_id: str
    note_id: str | None = None
    error: str
    attempts: int
    payload: str
    payload_encoding: Literal["utf-8", "base64"] = "utf-8"
    failed_at: float
