"""What the API answers: a note's status and result, or that it was queued."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from urllib.parse import quote

from pydantic import BaseModel, Field

from icdcoder.shared.messages import CodedNote
from icdcoder.shared.store.repository import StoredResult


class Links(BaseModel):
    self: str
    fhir: str

    @classmethod
    def of(cls, note_id: str) -> Links:
        base = f"/v1/notes/{quote(note_id, safe='')}"
        return cls(self=base, fhir=f"{base}/fhir")


class NoteAccepted(BaseModel):
    """The note version is queued (or being coded): poll ``links.self``."""

    id: str
    version: str = Field(description="the first 12 hex digits of the text's SHA-256")
    status: str
    links: Links

    @classmethod
    def of(cls, note_id: str, digest: str, status: str) -> NoteAccepted:
        return cls(id=note_id, version=digest[:12], status=status, links=Links.of(note_id))


class NoteView(BaseModel):
    """The newest version of a note: its status, and its codes once coded."""

    id: str
    version: str
    content_hash: str
    status: Literal["queued", "coding", "coded", "failed"] | str
    failure: str | None = Field(default=None, description="why it failed, when it did")
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    result: CodedNote | None = None
    links: Links


def note_view(stored: StoredResult) -> NoteView:
    note = stored.note
    return NoteView(
        id=note.note_id,
        version=note.content_hash[:12],
        content_hash=note.content_hash,
        status=note.status,
        failure=stored.failure if note.status == "failed" else None,
        metadata=dict(note.metadata),
        created_at=note.created_at,
        updated_at=note.updated_at,
        result=stored.coded,
        links=Links.of(note.note_id),
    )
