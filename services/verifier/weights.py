"""A pack's verifier weights, parsed once: span weights, note model, operating points.

The file (``weights.json`` in a pack) is what ``icdcoder train`` writes::

    {"bias": ..., "score": ..., ...,                  # span weights (span_model.FEATURES)
     "considered": 20,                                # candidates a span was fitted on
     "operating_point": {"accept_threshold": ...},    # where the span confidence is cut
     "provenance": {...},
     "note": {"features": [...], "trees": {...} | "bias": ..., ...,   # the note re-ranker
              "operating_point": {...}, "provenance": {...}}}

An operating point was chosen on held-out data for its fit, so it travels with the weights and
moves when they are refitted; settings may still override each of its values. So does
``considered``, how many of a span's candidates the models score: a file without it was fitted
on :data:`CONSIDERED_BEFORE`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from icdcoder.services.verifier.note_model import NoteModel, note_model_from_dict
from icdcoder.services.verifier.span_model import SpanWeights

#: ``considered`` of a weights file that does not say (fitted before it was recorded).
CONSIDERED_BEFORE = 10


@dataclass(frozen=True)
class OperatingPoint:
    """Where a fit's calibrated confidence is cut."""

    accept_threshold: float = 0.10
    #: Below this a code is not even suggested for review.
    review_threshold: float = 0.02
    max_codes_per_span: int = 1
    max_codes_per_note: int = 40

    @classmethod
    def from_dict(cls, point: Mapping[str, Any]) -> OperatingPoint:
        default = cls()
        return cls(
            accept_threshold=float(point.get("accept_threshold", default.accept_threshold)),
            review_threshold=float(point.get("review_threshold", default.review_threshold)),
            max_codes_per_span=int(point.get("max_codes_per_span", default.max_codes_per_span)),
            max_codes_per_note=int(point.get("max_codes_per_note", default.max_codes_per_note)),
        )


@dataclass(frozen=True)
class VerifierWeights:
    """Everything a weights file says, parsed and checked."""

    span: SpanWeights = field(default_factory=SpanWeights)
    span_point: OperatingPoint = OperatingPoint()
    #: The note re-ranker; None when the file has no ``note`` section.
    note: NoteModel | None = None
    note_point: OperatingPoint = OperatingPoint()
    provenance: Mapping[str, Any] = field(default_factory=dict)
    #: How many of a span's candidates the models were fitted on, and so score.
    considered: int = CONSIDERED_BEFORE

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VerifierWeights:
        note = data.get("note") or None
        considered = int(data.get("considered", CONSIDERED_BEFORE))
        if considered < 1:
            raise ValueError(f"considered must be 1 or more, not {considered}")
        return cls(
            span=SpanWeights.from_dict(data),
            span_point=OperatingPoint.from_dict(data.get("operating_point") or {}),
            note=note_model_from_dict(note) if note else None,
            note_point=OperatingPoint.from_dict((note or {}).get("operating_point") or {}),
            provenance=dict(data.get("provenance") or {}),
            considered=considered,
        )

    @classmethod
    def read(cls, path: Path) -> VerifierWeights:
        try:
            return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}: not a verifier weights file ({exc})") from None

    def point(self, *, reranker: bool) -> OperatingPoint:
        """The operating point of the model in use: the note model's with the re-ranker."""
        return self.note_point if reranker and self.note is not None else self.span_point
