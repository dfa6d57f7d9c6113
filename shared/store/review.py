"""Reviews in the store: the worklist, one note's review, decisions under a version number.

A review belongs to a result (a note version coded by one pack). Its state is the result's
codes plus the reviewers' decisions, an append-only audit trail (``review_decisions``): a code's
state is its newest decision. Every write names the review version it was made on; the version
moves by one per write, so a reviewer writing on a page older than another reviewer's write is
refused (:class:`StaleVersion`, the API's 409) instead of overwriting it silently. The check is
a conditional ``UPDATE ... WHERE version = :seen`` (and the primary key on the first write), so
it holds across processes and on SQLite as on PostgreSQL.

Statuses in the worklist: ``reviewed`` (a reviewer marked it so), ``needs_review`` (the system
sent at least one code to review) and ``coded`` (every code accepted by the system, not yet
reviewed). A decision on a reviewed note reopens it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import ColumnElement, Select, and_, case, exists, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from icdcoder.shared.codes import InvalidCodeError, normalise_code
from icdcoder.shared.messages import CodedNote
from icdcoder.shared.store.repository import Store, aware
from icdcoder.shared.store.schema import (
    CodeRow,
    Note,
    NoteReview,
    Result,
    ReviewDecision,
    utcnow,
)

ReviewStatus = Literal["coded", "needs_review", "reviewed"]
REVIEW_STATUSES: tuple[ReviewStatus, ...] = ("coded", "needs_review", "reviewed")
Action = Literal["accept", "reject", "add"]
ACTIONS: tuple[Action, ...] = ("accept", "reject", "add")


class ReviewError(Exception):
    """A review write that cannot be made; the message is for the reviewer (no note text)."""


class ReviewNotFound(ReviewError):
    pass


class StaleVersion(ReviewError):
    def __init__(self, seen: int, current: int) -> None:
        super().__init__(
            f"this note changed since you loaded it (your version {seen}, now {current}): "
            "another reviewer saved decisions; reload the note to see them, then decide again"
        )
        self.seen = seen
        self.current = current


class BadDecision(ReviewError):
    pass


@dataclass(frozen=True)
class DecisionIn:
    """A reviewer's decision on a code; ``evidence``: (start, end) offsets for an added code."""

    code: str
    action: Action
    evidence: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class DecisionRow:
    code: str
    action: Action
    user: str
    version: int
    created_at: datetime
    evidence: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class WorklistItem:
    note_id: str
    result_id: int
    status: ReviewStatus
    codes: int
    review_codes: int
    decisions: int
    version: int
    coded_at: datetime
    reviewed_by: str | None
    reviewed_at: datetime | None


@dataclass(frozen=True)
class Worklist:
    items: list[WorklistItem]
    #: Notes per status under the other filters (the status filter left out).
    counts: dict[str, int]
    total: int


@dataclass(frozen=True)
class ReviewState:
    """A note's result and its review: the audit trail oldest first."""

    note_id: str
    note_pk: int
    result_id: int
    text: str | None
    coded: CodedNote
    version: int
    status: ReviewStatus
    reviewed_by: str | None
    reviewed_at: datetime | None
    decisions: tuple[DecisionRow, ...] = field(default=())

    def current(self) -> dict[str, DecisionRow]:
        """Each decided code's newest decision."""
        latest: dict[str, DecisionRow] = {}
        for row in self.decisions:
            latest[row.code] = row
        return latest

    def final_codes(self) -> list[str]:
        """The codes as the review leaves them: the system's accepted codes not rejected and its
        review codes accepted, in the system's rank order, then the added codes in the order
        they were added. (Marking a note reviewed confirms the system's accepted codes that the
        reviewer left alone; review codes left alone are not confirmed.)"""
        current = self.current()
        out: list[str] = []
        for code in self.coded.codes:
            decided = current.get(code.code)
            if decided is None:
                if code.decision == "accept":
                    out.append(code.code)
            elif decided.action in ("accept", "add"):
                out.append(code.code)
        system = {c.code for c in self.coded.codes}
        for added, row in current.items():
            if added not in system and row.action == "add":
                out.append(added)
        return out

    def rejected_codes(self) -> list[str]:
        return [code for code, row in self.current().items() if row.action == "reject"]


def _status_expr() -> ColumnElement[str]:
    return case(
        (NoteReview.reviewed_at.is_not(None), "reviewed"),
        (Result.review > 0, "needs_review"),
        else_="coded",
    )


class ReviewStore:
    """Review reads and writes on a :class:`Store`, for the results of one pack (None: any)."""

    def __init__(self, store: Store, pack: str | None = None) -> None:
        self.store = store
        self.pack = pack

    # -- reading

    def _latest_results(self) -> Select[Any]:
        """The result of the newest coded version of each note."""
        newest = select(func.max(Note.id)).join(Result, Result.note_pk == Note.id)
        if self.pack is not None:
            newest = newest.where(Result.pack == self.pack)
        newest = newest.group_by(Note.note_id)
        query = select(func.max(Result.id)).where(Result.note_pk.in_(newest))
        if self.pack is not None:
            query = query.where(Result.pack == self.pack)
        return query.group_by(Result.note_pk)

    def worklist(
        self,
        *,
        status: ReviewStatus | None = None,
        note_id: str | None = None,
        code: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> Worklist:
        """Notes coded by the pack, newest first, filtered; counts per status."""
        filters: list[ColumnElement[bool]] = [Result.id.in_(self._latest_results())]
        if note_id:
            pattern = "%" + note_id.replace("\\", "\\\\").replace("%", r"\%").replace("_", r"\_")
            filters.append(Note.note_id.like(pattern + "%", escape="\\"))
        if code:
            try:
                wanted = normalise_code(code)
            except InvalidCodeError:
                wanted = code.strip().upper()
            filters.append(
                or_(
                    exists().where(CodeRow.result_id == Result.id, CodeRow.code == wanted),
                    exists().where(
                        ReviewDecision.result_id == Result.id,
                        ReviewDecision.code == wanted,
                        ReviewDecision.action == "add",
                    ),
                )
            )
        if since is not None:
            filters.append(Result.created_at >= since)
        if until is not None:
            filters.append(Result.created_at < until)
        status_expr = _status_expr()
        decided = (
            select(ReviewDecision.result_id, func.count().label("n"))
            .group_by(ReviewDecision.result_id)
            .subquery()
        )
        base = (
            select(
                Note.note_id,
                Result.id,
                status_expr.label("status"),
                Result.accepted,
                Result.review,
                func.coalesce(decided.c.n, 0),
                func.coalesce(NoteReview.version, 0),
                Result.created_at,
                NoteReview.reviewed_by,
                NoteReview.reviewed_at,
            )
            .join(Note, Note.id == Result.note_pk)
            .outerjoin(NoteReview, NoteReview.result_id == Result.id)
            .outerjoin(decided, decided.c.result_id == Result.id)
            .where(and_(*filters))
        )
        with self.store.session() as session:
            counts_query = (
                select(status_expr, func.count())
                .select_from(Result)
                .join(Note, Note.id == Result.note_pk)
                .outerjoin(NoteReview, NoteReview.result_id == Result.id)
                .where(and_(*filters))
                .group_by(status_expr)
            )
            counts: dict[str, int] = {str(s): 0 for s in REVIEW_STATUSES}
            counts.update({str(s): int(n) for s, n in session.execute(counts_query)})
            query = base if status is None else base.where(status_expr == status)
            rows = session.execute(
                query.order_by(Result.created_at.desc(), Result.id.desc())
                .limit(limit)
                .offset(offset)
            ).all()
        items = [
            WorklistItem(
                note_id=r[0],
                result_id=int(r[1]),
                status=r[2],
                codes=int(r[3]) + int(r[4]),
                review_codes=int(r[4]),
                decisions=int(r[5]),
                version=int(r[6]),
                coded_at=aware(r[7]),
                reviewed_by=r[8],
                reviewed_at=aware(r[9]) if r[9] is not None else None,
            )
            for r in rows
        ]
        total = counts[status] if status is not None else sum(counts.values())
        return Worklist(items, counts, total)

    def next_note(self, after: str) -> str | None:
        """The note to review after ``after``: the next one in the worklist's order (newest
        first, wrapping round) that needs review, else the next one not reviewed, else None."""
        with self.store.session() as session:
            here = session.execute(
                select(Result.created_at, Result.id)
                .join(Note, Note.id == Result.note_pk)
                .where(Result.id.in_(self._latest_results()), Note.note_id == after)
            ).first()
            later: ColumnElement[bool]
            if here is None:
                later = Result.id.is_not(None)
            else:
                later = or_(
                    Result.created_at < here[0],
                    and_(Result.created_at == here[0], Result.id < here[1]),
                )
            found = session.scalars(
                select(Note.note_id)
                .select_from(Result)
                .join(Note, Note.id == Result.note_pk)
                .outerjoin(NoteReview, NoteReview.result_id == Result.id)
                .where(
                    Result.id.in_(self._latest_results()),
                    NoteReview.reviewed_at.is_(None),
                    Note.note_id != after,
                )
                .order_by(
                    case((Result.review > 0, 0), else_=1),
                    case((later, 0), else_=1),
                    Result.created_at.desc(),
                    Result.id.desc(),
                )
                .limit(1)
            ).first()
            return found

    def note(self, note_id: str) -> ReviewState | None:
        with self.store.session() as session:
            return self._state(session, note_id)

    def _state(self, session: Session, note_id: str) -> ReviewState | None:
        row = session.execute(
            select(Note, Result)
            .join(Result, Result.note_pk == Note.id)
            .where(Result.id.in_(self._latest_results()), Note.note_id == note_id)
        ).first()
        if row is None:
            return None
        note, result = row
        review = session.get(NoteReview, result.id)
        decisions = session.scalars(
            select(ReviewDecision)
            .where(ReviewDecision.result_id == result.id)
            .order_by(ReviewDecision.id)
        ).all()
        coded = CodedNote.model_validate(result.coded)
        status: ReviewStatus = (
            "reviewed"
            if review is not None and review.reviewed_at is not None
            else "needs_review"
            if result.review > 0
            else "coded"
        )
        return ReviewState(
            note_id=note.note_id,
            note_pk=note.id,
            result_id=result.id,
            text=note.text,
            coded=coded,
            version=review.version if review is not None else 0,
            status=status,
            reviewed_by=review.reviewed_by if review is not None else None,
            reviewed_at=aware(review.reviewed_at)
            if review is not None and review.reviewed_at is not None
            else None,
            decisions=tuple(_decision(d) for d in decisions),
        )

    # -- writing

    def decide(
        self,
        note_id: str,
        *,
        version: int,
        decisions: Sequence[DecisionIn],
        user: str,
        known_code: Callable[[str], str | None],
    ) -> ReviewState:
        """Record ``decisions`` made on review ``version``; the new state.

        ``known_code`` gives a code's catalogue form, or None when the current catalogue does
        not have it: only such codes can be added.
        """
        if not decisions:
            raise BadDecision("no decision given")

        def write(session: Session, state: ReviewState, new_version: int) -> None:
            system = {c.code for c in state.coded.codes}
            current = state.current()
            length = len(state.text) if state.text is not None else None
            for decision in decisions:
                code = self._checked(decision, system, current, length, known_code)
                session.add(
                    ReviewDecision(
                        result_id=state.result_id,
                        note_pk=state.note_pk,
                        note_id=state.note_id,
                        code=code,
                        action=decision.action,
                        user=user,
                        version=new_version,
                        evidence=[{"start": s, "end": e} for s, e in decision.evidence] or None,
                        created_at=utcnow(),
                    )
                )
                current[code] = DecisionRow(code, decision.action, user, new_version, utcnow())

        return self._write(note_id, version, user, write, reviewed=False)

    def mark_reviewed(self, note_id: str, *, version: int, user: str) -> ReviewState:
        return self._write(note_id, version, user, lambda *_: None, reviewed=True)

    def _checked(
        self,
        decision: DecisionIn,
        system: set[str],
        current: dict[str, DecisionRow],
        length: int | None,
        known_code: Callable[[str], str | None],
    ) -> str:
        if decision.action not in ACTIONS:
            raise BadDecision(f"unknown action {decision.action!r}: accept, reject or add")
        try:
            code = normalise_code(decision.code)
        except InvalidCodeError:
            raise BadDecision(f"not an ICD-10-CM code: {decision.code[:20]!r}") from None
        if decision.action == "add":
            catalogued = known_code(code)
            if catalogued is None:
                raise BadDecision(f"{code} is not in the current catalogue")
            code = catalogued
            for start, end in decision.evidence:
                if not 0 <= start < end or (length is not None and end > length):
                    raise BadDecision(
                        f"evidence {start}-{end} is not a span of the note "
                        f"({length if length is not None else '?'} characters)"
                    )
        else:
            if decision.evidence:
                raise BadDecision("evidence is given only with an added code")
            if code not in system and code not in current:
                raise BadDecision(f"{code} is not a code of this note: add it instead")
        return code

    def _write(
        self,
        note_id: str,
        version: int,
        user: str,
        write: Callable[[Session, ReviewState, int], None],
        *,
        reviewed: bool,
    ) -> ReviewState:
        with self.store.session() as session:
            try:
                with session.begin():
                    state = self._state(session, note_id)
                    if state is None:
                        raise ReviewNotFound(f"no coded note {note_id!r}")
                    if state.version != version:
                        raise StaleVersion(version, state.version)
                    new_version = version + 1
                    now = utcnow()
                    values: dict[str, Any] = {
                        "version": new_version,
                        "updated_by": user,
                        "updated_at": now,
                        "reviewed_by": user if reviewed else None,
                        "reviewed_at": now if reviewed else None,
                    }
                    if version == 0:
                        session.add(
                            NoteReview(result_id=state.result_id, note_pk=state.note_pk, **values)
                        )
                        session.flush()
                    else:
                        moved = session.execute(
                            update(NoteReview)
                            .where(
                                NoteReview.result_id == state.result_id,
                                NoteReview.version == version,
                            )
                            .values(**values)
                            .execution_options(synchronize_session=False)
                        )
                        if getattr(moved, "rowcount", 1) != 1:
                            raise StaleVersion(version, version + 1)
                    write(session, state, new_version)
            except IntegrityError:
                current = self.note(note_id)
                raise StaleVersion(version, current.version if current else -1) from None
        fresh = self.note(note_id)
        assert fresh is not None
        return fresh

    def reviewed(self) -> Iterator[ReviewState]:
        """Every reviewed note (its newest coded version), in note id order."""
        with self.store.session() as session:
            ids = session.scalars(
                select(Note.note_id)
                .join(Result, Result.note_pk == Note.id)
                .join(NoteReview, NoteReview.result_id == Result.id)
                .where(Result.id.in_(self._latest_results()), NoteReview.reviewed_at.is_not(None))
                .order_by(Note.note_id)
            ).all()
        for note_id in ids:
            state = self.note(note_id)
            if state is not None and state.status == "reviewed":
                yield state


def _decision(row: ReviewDecision) -> DecisionRow:
    evidence = tuple((int(e["start"]), int(e["end"])) for e in (row.evidence or []))
    action: Action = row.action  # type: ignore[assignment]
    return DecisionRow(row.code, action, row.user, row.version, aware(row.created_at), evidence)
