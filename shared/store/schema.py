"""The store's tables (one migration per change, under ``migrations/versions``).

notes     one row per note version: id + content hash; text (unless the store keeps
          none), source, metadata (encounter, discharge date...), status, times
results   one per note version and model pack: the CodedNote as JSON, pack, catalogue
codes     one per code of a result: code, decision, confidence, rank, evidence offsets,
          so that users can query codes with SQL
failures  notes that could not be coded: stage, reason, attempts (and the payload)
users             reviewers of the review page (argon2 password hashes)
note_reviews      per result: the review version (optimistic locking) and who marked it reviewed
review_decisions  the audit trail: accept / reject / add of a code, by whom, when
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

#: JSONB on PostgreSQL (indexable, compact), JSON text on SQLite.
JSONType = JSON().with_variant(JSONB(), "postgresql")
#: Big integer keys on PostgreSQL; SQLite's rowid needs INTEGER PRIMARY KEY to autoincrement.
Key = BigInteger().with_variant(Integer(), "sqlite")

NOTE_STATUSES = ("queued", "coding", "coded", "failed")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class Note(Base):
    __tablename__ = "notes"
    __table_args__ = (UniqueConstraint("note_id", "content_hash"),)

    id: Mapped[int] = mapped_column(Key, primary_key=True, autoincrement=True)
    note_id: Mapped[str] = mapped_column(String(200), index=True)
    content_hash: Mapped[str] = mapped_column(String(64))
    chars: Mapped[int] = mapped_column(Integer)
    text: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str | None] = mapped_column(String(1000))
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSONType, default=dict)
    status: Mapped[str] = mapped_column(String(16), index=True, default="queued")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow, index=True
    )

    results: Mapped[list[Result]] = relationship(back_populates="note", passive_deletes=True)


class Result(Base):
    __tablename__ = "results"
    __table_args__ = (UniqueConstraint("note_pk", "pack"),)

    id: Mapped[int] = mapped_column(Key, primary_key=True, autoincrement=True)
    note_pk: Mapped[int] = mapped_column(ForeignKey("notes.id", ondelete="CASCADE"), index=True)
    pack: Mapped[str] = mapped_column(String(120), index=True)
    catalogue_version: Mapped[str] = mapped_column(String(40))
    verifier: Mapped[str] = mapped_column(String(40))
    accepted: Mapped[int] = mapped_column(Integer)
    review: Mapped[int] = mapped_column(Integer)
    coded: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, index=True
    )

    note: Mapped[Note] = relationship(back_populates="results")
    codes: Mapped[list[CodeRow]] = relationship(
        back_populates="result", order_by="CodeRow.rank", passive_deletes=True
    )


class CodeRow(Base):
    __tablename__ = "codes"

    id: Mapped[int] = mapped_column(Key, primary_key=True, autoincrement=True)
    result_id: Mapped[int] = mapped_column(ForeignKey("results.id", ondelete="CASCADE"), index=True)
    note_pk: Mapped[int] = mapped_column(ForeignKey("notes.id", ondelete="CASCADE"), index=True)
    rank: Mapped[int] = mapped_column(Integer)
    code: Mapped[str] = mapped_column(String(10), index=True)
    description: Mapped[str] = mapped_column(Text)
    decision: Mapped[str] = mapped_column(String(8), index=True)
    confidence: Mapped[float] = mapped_column(Float)
    #: [{"start", "end", "section"}] of every evidence span; the first one also as columns.
    evidence: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    evidence_start: Mapped[int | None] = mapped_column(Integer)
    evidence_end: Mapped[int | None] = mapped_column(Integer)

    result: Mapped[Result] = relationship(back_populates="codes")


class ApiKey(Base):
    """An HTTP API key: its name and the SHA-256 of the key (the key itself is shown once)."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Key, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Failure(Base):
    __tablename__ = "failures"

    id: Mapped[int] = mapped_column(Key, primary_key=True, autoincrement=True)
    note_pk: Mapped[int | None] = mapped_column(
        ForeignKey("notes.id", ondelete="SET NULL"), index=True
    )
    note_id: Mapped[str | None] = mapped_column(String(200), index=True)
    content_hash: Mapped[str | None] = mapped_column(String(64))
    stage: Mapped[str] = mapped_column(String(40))
    reason: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    #: What was received, to replay (NULL when the store keeps no text).
    payload: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, index=True
    )


class User(Base):
    """A reviewer who logs in to the review page: a name and an argon2 hash of the password."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Key, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class NoteReview(Base):
    """The review state of one result (a note version coded by a pack): a version number that
    every write must name (a stale one is refused), and who marked it reviewed, when."""

    __tablename__ = "note_reviews"

    result_id: Mapped[int] = mapped_column(
        ForeignKey("results.id", ondelete="CASCADE"), primary_key=True
    )
    note_pk: Mapped[int] = mapped_column(ForeignKey("notes.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer, default=0)
    reviewed_by: Mapped[str | None] = mapped_column(String(120))
    reviewed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    updated_by: Mapped[str] = mapped_column(String(120))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ReviewDecision(Base):
    """The audit trail: one row per reviewer decision on a code (append-only; a code's state
    is its newest decision). ``evidence`` holds the offsets a reviewer gave an added code."""

    __tablename__ = "review_decisions"

    id: Mapped[int] = mapped_column(Key, primary_key=True, autoincrement=True)
    result_id: Mapped[int] = mapped_column(ForeignKey("results.id", ondelete="CASCADE"), index=True)
    note_pk: Mapped[int] = mapped_column(ForeignKey("notes.id", ondelete="CASCADE"), index=True)
    note_id: Mapped[str] = mapped_column(String(200), index=True)
    code: Mapped[str] = mapped_column(String(10), index=True)
    action: Mapped[str] = mapped_column(String(8), index=True)
    user: Mapped[str] = mapped_column(String(120))
    #: The review version this decision made (the note's version after it).
    version: Mapped[int] = mapped_column(Integer)
    evidence: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, index=True
    )
