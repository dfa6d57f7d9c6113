"""What the program does with the store: register notes, keep results and failures, read back.

A note version is its id plus the SHA-256 of its text: the same note sent twice is one row; a
changed text is a new version. A result is kept once per note version and model pack, so a
rerun of the same archive with the same pack finds everything coded, and a new pack codes
again. Writes are idempotent (``ON CONFLICT DO NOTHING``), so two writers racing on one note
(a retried bus message, two replicas) leave one row.

With ``keep_text=False`` no patient text is stored: the note's text, the evidence and excluded
spans' text in the kept result, and failed payloads are left out; offsets stay.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from icdcoder.shared.messages import CodedNote
from icdcoder.shared.notes import content_hash
from icdcoder.shared.store.engine import session_factory
from icdcoder.shared.store.schema import CodeRow, Failure, Note, Result, utcnow


@dataclass(frozen=True)
class NoteVersion:
    """A note as stored: its key, status and where it came from (no text)."""

    pk: int
    note_id: str
    content_hash: str
    status: str
    source: str | None
    metadata: Mapping[str, Any]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class StoredResult:
    note: NoteVersion
    text: str | None
    coded: CodedNote | None
    failure: str | None


def _version(row: Note) -> NoteVersion:
    return NoteVersion(
        pk=row.id,
        note_id=row.note_id,
        content_hash=row.content_hash,
        status=row.status,
        source=row.source,
        metadata=dict(row.meta or {}),
        created_at=aware(row.created_at),
        updated_at=aware(row.updated_at),
    )


def aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes: they were stored in UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def without_text(coded: CodedNote) -> CodedNote:
    """The result with every span's text removed (offsets kept)."""
    return coded.model_copy(
        update={
            "codes": [
                c.model_copy(
                    update={"evidence": [e.model_copy(update={"text": ""}) for e in c.evidence]}
                )
                for c in coded.codes
            ],
            "excluded": [x.model_copy(update={"text": ""}) for x in coded.excluded],
        }
    )


class Store:
    def __init__(self, engine: Engine, *, keep_text: bool = True) -> None:
        self.engine = engine
        self.keep_text = keep_text
        self._sessions = session_factory(engine)

    def session(self) -> Session:
        return self._sessions()

    def _insert(self, session: Session) -> Any:
        return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert

    # -- notes

    def register(
        self,
        note_id: str,
        text: str,
        *,
        source: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        status: str = "queued",
    ) -> tuple[NoteVersion, bool]:
        """The note version for this text, created when new; (version, created)."""
        digest = content_hash(text)
        with self.session() as session, session.begin():
            insert = self._insert(session)
            inserted = session.execute(
                insert(Note)
                .values(
                    note_id=note_id,
                    content_hash=digest,
                    chars=len(text),
                    text=text if self.keep_text else None,
                    source=source,
                    meta=dict(metadata or {}),
                    status=status,
                    created_at=utcnow(),
                    updated_at=utcnow(),
                )
                .on_conflict_do_nothing(index_elements=["note_id", "content_hash"])
                .returning(Note.id)
            ).scalar()
            row = session.scalars(
                select(Note).where(Note.note_id == note_id, Note.content_hash == digest)
            ).one()
            return _version(row), inserted is not None

    def set_status(self, pk: int, status: str) -> None:
        with self.session() as session, session.begin():
            session.execute(
                update(Note).where(Note.id == pk).values(status=status, updated_at=utcnow())
            )

    def statuses(self, pks: Sequence[int]) -> dict[int, str]:
        """The status of each note version (by primary key)."""
        with self.session() as session:
            rows = session.execute(select(Note.id, Note.status).where(Note.id.in_(pks)))
            return {int(pk): str(status) for pk, status in rows}

    def coded_versions(self, keys: Iterable[tuple[str, str]], pack: str) -> set[tuple[str, str]]:
        """Which (note id, content hash) pairs already have a result of ``pack``."""
        wanted = list(keys)
        found: set[tuple[str, str]] = set()
        with self.session() as session:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                ids = {note_id for note_id, _ in chunk}
                rows = session.execute(
                    select(Note.note_id, Note.content_hash)
                    .join(Result, Result.note_pk == Note.id)
                    .where(Note.note_id.in_(ids), Result.pack == pack)
                )
                found |= {(r.note_id, r.content_hash) for r in rows} & set(chunk)
        return found

    # -- results and failures

    def save_result(
        self,
        coded: CodedNote,
        *,
        text: str | None = None,
        source: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> bool:
        """Keep ``coded`` for its note version and pack; False when it was kept already.

        The note version is created when unknown (``text``, when given, is what the result was
        computed from; without it only the offsets locate the evidence).
        """
        digest = coded.content_hash or (content_hash(text) if text is not None else "")
        kept = coded if self.keep_text else without_text(coded)
        with self.session() as session, session.begin():
            note = self._note_for(session, coded.note_id, digest, text, source, metadata)
            insert = self._insert(session)
            result_id = session.execute(
                insert(Result)
                .values(
                    note_pk=note.id,
                    pack=coded.pack,
                    catalogue_version=coded.catalogue_version,
                    verifier=coded.verifier.backend,
                    accepted=sum(1 for c in coded.codes if c.decision == "accept"),
                    review=sum(1 for c in coded.codes if c.decision == "review"),
                    coded=kept.model_dump(mode="json"),
                    created_at=utcnow(),
                )
                .on_conflict_do_nothing(index_elements=["note_pk", "pack"])
                .returning(Result.id)
            ).scalar()
            if result_id is None:
                return False
            session.add_all(
                CodeRow(
                    result_id=result_id,
                    note_pk=note.id,
                    rank=rank,
                    code=code.code,
                    description=code.description,
                    decision=code.decision,
                    confidence=code.confidence,
                    evidence=[
                        {"start": e.start, "end": e.end, "section": e.section}
                        for e in code.evidence
                    ],
                    evidence_start=code.evidence[0].start if code.evidence else None,
                    evidence_end=code.evidence[0].end if code.evidence else None,
                )
                for rank, code in enumerate(coded.codes, start=1)
            )
            note.status = "coded"
            note.updated_at = utcnow()
            return True

    def _note_for(
        self,
        session: Session,
        note_id: str,
        digest: str,
        text: str | None,
        source: str | None,
        metadata: Mapping[str, Any] | None,
    ) -> Note:
        note = session.scalars(
            select(Note).where(Note.note_id == note_id, Note.content_hash == digest)
        ).one_or_none()
        if note is not None:
            return note
        note = Note(
            note_id=note_id,
            content_hash=digest,
            chars=len(text) if text is not None else 0,
            text=text if self.keep_text else None,
            source=source,
            meta=dict(metadata or {}),
            status="queued",
        )
        session.add(note)
        session.flush()
        return note

    def save_failure(
        self,
        *,
        stage: str,
        reason: str,
        note_id: str | None = None,
        text: str | None = None,
        digest: str | None = None,
        attempts: int = 1,
        payload: str | None = None,
        source: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> int:
        """Record that a note could not be coded (its version is marked failed when known)."""
        if digest is None and text is not None:
            digest = content_hash(text)
        with self.session() as session, session.begin():
            note = None
            if note_id is not None and digest is not None:
                note = self._note_for(session, note_id, digest, text, source, metadata)
                if note.status != "coded":
                    note.status = "failed"
                    note.updated_at = utcnow()
            failure = Failure(
                note_pk=note.id if note is not None else None,
                note_id=note_id,
                content_hash=digest,
                stage=stage,
                reason=reason,
                attempts=attempts,
                payload=payload if self.keep_text else None,
            )
            session.add(failure)
            session.flush()
            return failure.id

    # -- reading

    def latest(self, note_id: str, pack: str | None = None) -> StoredResult | None:
        """The newest version of a note, with its result (of ``pack``, else the newest)."""
        with self.session() as session:
            note = session.scalars(
                select(Note)
                .where(Note.note_id == note_id)
                .order_by(Note.created_at.desc(), Note.id.desc())
                .limit(1)
            ).one_or_none()
            if note is None:
                return None
            query = select(Result).where(Result.note_pk == note.id)
            if pack is not None:
                query = query.where(Result.pack == pack)
            result = session.scalars(query.order_by(Result.created_at.desc()).limit(1)).first()
            failure = session.scalars(
                select(Failure.reason)
                .where(Failure.note_pk == note.id)
                .order_by(Failure.created_at.desc())
                .limit(1)
            ).first()
            coded = CodedNote.model_validate(result.coded) if result is not None else None
            return StoredResult(_version(note), note.text, coded, failure)

    def iter_results(
        self,
        *,
        since: datetime | None = None,
        statuses: Sequence[str] = ("coded",),
        pack: str | None = None,
        batch: int = 500,
    ) -> Iterator[StoredResult]:
        """Every stored result (newest version of each note), streamed in id order."""
        query = (
            select(Note, Result)
            .join(Result, Result.note_pk == Note.id)
            .where(Note.status.in_(statuses))
            .order_by(Note.id, Result.id)
        )
        if since is not None:
            query = query.where(Result.created_at >= since)
        if pack is not None:
            query = query.where(Result.pack == pack)
        with self.session() as session:
            for note, result in session.execute(query.execution_options(yield_per=batch)):
                yield StoredResult(
                    _version(note), note.text, CodedNote.model_validate(result.coded), None
                )

    def counts(self) -> dict[str, int]:
        """Notes by status, results, codes and failures."""
        with self.session() as session:
            by_status = dict(
                session.execute(select(Note.status, func.count()).group_by(Note.status)).all()
            )
            out = {f"notes_{status}": int(n) for status, n in by_status.items()}
            out["results"] = int(session.scalar(select(func.count(Result.id))) or 0)
            out["codes"] = int(session.scalar(select(func.count(CodeRow.id))) or 0)
            out["failures"] = int(session.scalar(select(func.count(Failure.id))) or 0)
            return out
