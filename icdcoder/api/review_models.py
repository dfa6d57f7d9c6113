"""What the review API reads and answers (documented in the OpenAPI), and the pure mapping
from a :class:`~icdcoder.shared.store.review.ReviewState` to it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from icdcoder.shared.store.review import (
    DecisionIn,
    ReviewState,
    ReviewStatus,
    Worklist,
)


class Offsets(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: int = Field(ge=0)
    end: int = Field(gt=0)
    section: str = ""


class DecisionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=3, max_length=10, examples=["E11.9"])
    action: Literal["accept", "reject", "add"]
    evidence: list[Offsets] = Field(
        default_factory=list,
        max_length=20,
        description="for an added code: where the note says it (character offsets)",
    )

    def decision(self) -> DecisionIn:
        return DecisionIn(self.code, self.action, tuple((e.start, e.end) for e in self.evidence))


class DecisionsRequest(BaseModel):
    """Decisions made on review ``version`` (as the last read or write answered it)."""

    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=0)
    decisions: list[DecisionRequest] = Field(min_length=1, max_length=200)


class ReviewedRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=0)


class ReviewCode(BaseModel):
    """A code as the reviewer sees it: the system's proposal and the reviewer's decision."""

    code: str
    description: str
    rank: int = Field(description="1 = the system's first; added codes follow")
    system: Literal["accept", "review", "added"] = Field(
        description="the system's decision (added: a reviewer's code)"
    )
    confidence: float | None
    justification: str
    evidence: list[Offsets]
    state: Literal["accept", "reject", "add"] | None = Field(
        description="the reviewer's newest decision, None while undecided"
    )
    decided_by: str | None = None
    decided_at: datetime | None = None


class ExcludedView(BaseModel):
    start: int
    end: int
    code: str
    reason: str


class AuditRow(BaseModel):
    code: str
    action: Literal["accept", "reject", "add"]
    user: str
    version: int
    at: datetime
    evidence: list[Offsets] = []


class ReviewNoteView(BaseModel):
    id: str
    version: int = Field(description="send it back with the next write (a stale one is 409)")
    status: ReviewStatus
    reviewed_by: str | None
    reviewed_at: datetime | None
    pack: str
    catalogue_version: str
    text: str | None = Field(description="the note's text (None when the store keeps none)")
    codes: list[ReviewCode]
    final_codes: list[str] = Field(description="the codes as the review leaves them")
    excluded: list[ExcludedView]
    audit: list[AuditRow]


class WorklistEntry(BaseModel):
    id: str
    status: ReviewStatus
    codes: int
    review_codes: int = Field(description="codes the system sent to review")
    decisions: int
    version: int
    coded_at: datetime
    reviewed_by: str | None
    reviewed_at: datetime | None


class WorklistView(BaseModel):
    items: list[WorklistEntry]
    counts: dict[str, int] = Field(description="notes per status under the other filters")
    total: int
    limit: int
    offset: int


class CatalogueHit(BaseModel):
    code: str
    description: str
    billable: bool


class CatalogueSearchView(BaseModel):
    query: str
    catalogue_version: str
    hits: list[CatalogueHit]


def worklist_view(worklist: Worklist, limit: int, offset: int) -> WorklistView:
    return WorklistView(
        items=[
            WorklistEntry(
                id=i.note_id,
                status=i.status,
                codes=i.codes,
                review_codes=i.review_codes,
                decisions=i.decisions,
                version=i.version,
                coded_at=i.coded_at,
                reviewed_by=i.reviewed_by,
                reviewed_at=i.reviewed_at,
            )
            for i in worklist.items
        ],
        counts=worklist.counts,
        total=worklist.total,
        limit=limit,
        offset=offset,
    )


def review_codes(state: ReviewState, describe: Callable[[str], str]) -> list[ReviewCode]:
    """The system's codes in rank order, then the codes reviewers added (in order added)."""
    current = state.current()
    out: list[ReviewCode] = []
    for rank, code in enumerate(state.coded.codes, start=1):
        decided = current.get(code.code)
        out.append(
            ReviewCode(
                code=code.code,
                description=code.description,
                rank=rank,
                system=code.decision,
                confidence=code.confidence,
                justification=code.justification,
                evidence=[
                    Offsets(start=e.start, end=e.end, section=e.section) for e in code.evidence
                ],
                state=decided.action if decided else None,
                decided_by=decided.user if decided else None,
                decided_at=decided.created_at if decided else None,
            )
        )
    system = {c.code for c in state.coded.codes}
    for extra, decided in current.items():
        if extra in system:
            continue
        added = next(
            (d for d in reversed(state.decisions) if d.code == extra and d.action == "add"), None
        )
        evidence = added.evidence if added is not None else ()
        out.append(
            ReviewCode(
                code=extra,
                description=describe(extra),
                rank=len(out) + 1,
                system="added",
                confidence=None,
                justification=f"added by {added.user if added else decided.user}",
                evidence=[Offsets(start=s, end=e) for s, e in evidence],
                state=decided.action,
                decided_by=decided.user,
                decided_at=decided.created_at,
            )
        )
    return out


def note_view(state: ReviewState, describe: Callable[[str], str]) -> ReviewNoteView:
    return ReviewNoteView(
        id=state.note_id,
        version=state.version,
        status=state.status,
        reviewed_by=state.reviewed_by,
        reviewed_at=state.reviewed_at,
        pack=state.coded.pack,
        catalogue_version=state.coded.catalogue_version,
        text=state.text,
        codes=review_codes(state, describe),
        final_codes=state.final_codes(),
        excluded=[
            ExcludedView(start=x.start, end=x.end, code=x.code, reason=x.reason)
            for x in state.coded.excluded
        ],
        audit=[
            AuditRow(
                code=d.code,
                action=d.action,
                user=d.user,
                version=d.version,
                at=d.created_at,
                evidence=[Offsets(start=s, end=e) for s, e in d.evidence],
            )
            for d in state.decisions
        ],
    )
