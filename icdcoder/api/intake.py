"""Reading a POSTed note: a JSON note or a FHIR R4 DocumentReference, checked like any intake.

Every problem is an :class:`ApiProblem` with its HTTP status and a one-line detail that names
fields and sizes, never the note's text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from icdcoder.shared.errors import describe_validation
from icdcoder.shared.fhir import FhirInputError, note_from_document
from icdcoder.shared.messages import NOTE_ID_PATTERN
from icdcoder.shared.notes import NoteRejected, check_note_text

JSON_TYPES = ("application/json", "application/fhir+json")


class ApiProblem(Exception):
    """An HTTP error with its status and detail (RFC 9457 problem details)."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail


class NoteRequest(BaseModel):
    """A note to code: ``id`` identifies it (a new ``text`` under the same id is a new version
    of the note), ``metadata`` is kept with it (``subject``/``patient`` and ``encounter``
    references end up in the FHIR Conditions)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=NOTE_ID_PATTERN, examples=["adm-2024-0017"])
    text: str = Field(min_length=1, examples=["Discharge diagnoses: type 2 diabetes mellitus."])
    metadata: dict[str, Any] = Field(
        default_factory=dict, examples=[{"subject": "Patient/123", "encounter": "Encounter/9"}]
    )


@dataclass(frozen=True)
class Submission:
    note_id: str
    text: str
    metadata: dict[str, Any]


def parse_submission(body: bytes, content_type: str, max_chars: int) -> Submission:
    media = content_type.split(";")[0].strip().lower()
    if media not in JSON_TYPES:
        raise ApiProblem(
            415,
            "Unsupported media type",
            "send application/json (a note) or application/fhir+json (a DocumentReference)",
        )
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise ApiProblem(400, "Not JSON", "the body is not JSON (UTF-8)") from None
    if not isinstance(data, dict):
        raise ApiProblem(422, "Not a note", "the body must be a JSON object")
    if data.get("resourceType") is not None:
        if data.get("resourceType") != "DocumentReference":
            raise ApiProblem(422, "Not a note", "the FHIR resource must be a DocumentReference")
        try:
            note_id, text, metadata = note_from_document(data)
        except FhirInputError as exc:
            raise ApiProblem(422, "Not a usable DocumentReference", str(exc)) from None
        if not _valid_id(note_id):
            raise ApiProblem(422, "Bad id", "the DocumentReference id is not a valid note id")
    else:
        try:
            request = NoteRequest.model_validate(data)
        except ValidationError as exc:
            raise ApiProblem(422, "Not a note", describe_validation(exc)) from None
        note_id, text, metadata = request.id, request.text, request.metadata
    try:
        check_note_text(text, max_chars)
    except NoteRejected as exc:
        raise ApiProblem(422, "Not a codable note", str(exc)) from None
    return Submission(note_id, text, metadata)


def _valid_id(note_id: str) -> bool:
    import re

    return re.match(NOTE_ID_PATTERN, note_id) is not None
