"""FHIR R4 in and out, built and validated with ``fhir.resources`` (its R4B models: the R4
technical correction, the same Condition and DocumentReference).

Out: a note's codes as a ``Bundle`` (type ``collection``) of ``Condition`` resources:

- ``code``: the ICD-10-CM coding (``http://hl7.org/fhir/sid/icd-10-cm``) with its display;
- ``verificationStatus``: ``confirmed`` for an accepted code, ``provisional`` for one sent to
  review; ``category``: ``encounter-diagnosis``;
- ``subject`` and ``encounter``: references from the note's metadata (``subject``/``patient``
  and ``encounter``), else a display saying none was given;
- ``evidence.detail``: the note (``DocumentReference/<note id>``); each evidence span's offsets
  and text in an ``evidence-span`` extension, the confidence in a ``confidence`` extension, the
  justification in ``note``.

In: a ``DocumentReference`` with a ``text/plain`` attachment (base64 ``data``) becomes a note:
its id, its text and metadata (subject, encounter, date).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.condition import Condition
from fhir.resources.R4B.documentreference import DocumentReference
from pydantic import ValidationError

from icdcoder.shared.errors import describe_validation
from icdcoder.shared.logging import PublicError
from icdcoder.shared.messages import CodedNote, CodeResult

ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
#: Where this project's extensions are defined (their URLs name what they carry).
EXTENSIONS = "https://icdcoder.dev/fhir/StructureDefinition"
EVIDENCE_SPAN = f"{EXTENSIONS}/evidence-span"
CONFIDENCE = f"{EXTENSIONS}/confidence"
PACK = f"{EXTENSIONS}/model-pack"

_FHIR_ID = re.compile(r"[^A-Za-z0-9\-.]")


class FhirInputError(PublicError, ValueError):
    """A FHIR resource that is not a usable note (the message says which part, never text)."""


def fhir_id(raw: str) -> str:
    """A valid FHIR id (``[A-Za-z0-9-.]{1,64}``) from a note id or code."""
    return _FHIR_ID.sub("-", raw)[:64] or "x"


def _reference(metadata: Mapping[str, Any], *keys: str) -> dict[str, str] | None:
    for key in keys:
        value = metadata.get(key)
        if isinstance(value, str) and value:
            return {"reference": value} if "/" in value else {"display": value}
        if isinstance(value, Mapping):
            return {k: str(v) for k, v in value.items() if k in ("reference", "display")}
    return None


def condition(
    coded: CodedNote, code: CodeResult, rank: int, metadata: Mapping[str, Any]
) -> Condition:
    decision = "confirmed" if code.decision == "accept" else "provisional"
    spans = [
        {
            "url": EVIDENCE_SPAN,
            "extension": [
                {"url": "start", "valueInteger": e.start},
                {"url": "end", "valueInteger": e.end},
                *([{"url": "text", "valueString": e.text}] if e.text else []),
                *([{"url": "section", "valueString": e.section}] if e.section else []),
            ],
        }
        for e in code.evidence
    ]
    data: dict[str, Any] = {
        "resourceType": "Condition",
        "id": fhir_id(f"{coded.note_id}-{rank}-{code.code}"),
        "extension": [{"url": CONFIDENCE, "valueDecimal": code.confidence}, *spans],
        "verificationStatus": {
            "coding": [{"system": VERIFICATION, "code": decision}],
        },
        "category": [{"coding": [{"system": CATEGORY, "code": "encounter-diagnosis"}]}],
        "code": {
            "coding": [{"system": ICD10CM, "code": code.code, "display": code.description}],
            "text": code.description,
        },
        "subject": _reference(metadata, "subject", "patient") or {"display": "not given"},
        "evidence": [{"detail": [{"reference": f"DocumentReference/{fhir_id(coded.note_id)}"}]}],
        "note": [{"text": code.justification}],
    }
    encounter = _reference(metadata, "encounter")
    if encounter is not None:
        data["encounter"] = encounter
    return Condition.model_validate(data)


def bundle(
    coded: CodedNote,
    metadata: Mapping[str, Any] | None = None,
    *,
    when: datetime | None = None,
) -> Bundle:
    """The note's codes as a validated FHIR R4 ``Bundle`` of ``Condition`` resources."""
    meta = metadata or {}
    conditions = [condition(coded, code, rank, meta) for rank, code in enumerate(coded.codes, 1)]
    data: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": fhir_id(coded.note_id),
        "type": "collection",
        "entry": [
            {"fullUrl": f"urn:uuid:{_uuid(coded.note_id, c.id or '')}", "resource": c}
            for c in conditions
        ],
    }
    if coded.pack:
        data["meta"] = {"tag": [{"system": PACK, "code": coded.pack}]}
    if when is not None:
        data["timestamp"] = when.isoformat()
    return Bundle.model_validate(data)


def _uuid(*parts: str) -> str:
    import uuid

    return str(uuid.uuid5(uuid.NAMESPACE_URL, "icdcoder:" + ":".join(parts)))


def _strict_base64(resource: Mapping[str, Any]) -> None:
    """Refuse attachment data that is not strict base64 (the models decode leniently)."""
    content = resource.get("content")
    for item in content if isinstance(content, list) else []:
        attachment = item.get("attachment") if isinstance(item, Mapping) else None
        data = attachment.get("data") if isinstance(attachment, Mapping) else None
        if data is None:
            continue
        try:
            base64.b64decode(str(data), validate=True)
        except (binascii.Error, ValueError):
            raise FhirInputError("the attachment's data is not valid base64") from None


def note_from_document(resource: Mapping[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """(note id, text, metadata) of a ``DocumentReference`` with a ``text/plain`` attachment."""
    _strict_base64(resource)
    try:
        document = DocumentReference.model_validate(resource)
    except ValidationError as exc:
        if any(err["type"] == "base64_decode" for err in exc.errors()):
            raise FhirInputError("the attachment's data is not valid base64") from None
        raise FhirInputError(
            f"not a valid FHIR R4 DocumentReference: {describe_validation(exc)}"
        ) from None
    if not document.id:
        raise FhirInputError("the DocumentReference needs an id (it becomes the note id)")
    attachments = [c.attachment for c in document.content or [] if c.attachment is not None]
    plain = [
        a
        for a in attachments
        if (a.contentType or "").split(";")[0].strip().lower() == "text/plain" and a.data
    ]
    if not plain:
        raise FhirInputError("the DocumentReference has no text/plain attachment with data")
    raw = plain[0].data  # fhir.resources decoded the base64 while validating
    if not isinstance(raw, bytes):
        raise FhirInputError("the attachment's data is not base64")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FhirInputError(
            f"the attachment is not UTF-8 text (bad byte at offset {exc.start})"
        ) from None
    metadata: dict[str, Any] = {"fhir": "DocumentReference"}
    if document.subject is not None and document.subject.reference:
        metadata["subject"] = document.subject.reference
    encounters = document.context.encounter if document.context else None
    if encounters and encounters[0].reference:
        metadata["encounter"] = encounters[0].reference
    if document.date is not None:
        metadata["date"] = str(document.date)
    return str(document.id), text, metadata
