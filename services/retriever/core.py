"""Retriever core: spans -> nearest catalogue codes. Pure: the encoder and index are injected.

Each span is embedded and searched against the catalogue texts (descriptions, inclusion terms,
alphabetic-index paths). Several texts of one code collapse into one candidate carrying the
best score and the text that matched. Spans flagged *family* or *historical* are also searched
as "family history of ..." / "personal history of ...", so the Z80-Z87 history codes that
describe exactly that context are among the candidates.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from shared.context import query_texts
from shared.messages import Candidate, RetrievedNote, SegmentedNote, SpanCandidates

Vectors = npt.NDArray[np.float32]

#: How many rows to fetch per candidate wanted: several texts of one code share the top rows.
OVERFETCH = 4


class Encoder(Protocol):
    def encode(self, texts: Sequence[str]) -> Vectors:
        """L2-normalised float32 vectors, one row per text."""
        ...


class VectorIndex(Protocol):
    def search(self, queries: Vectors, k: int) -> tuple[Vectors, npt.NDArray[np.int64]]:
        """Inner-product scores and row ids of the ``k`` nearest rows per query (-1: none)."""
        ...


@dataclass(frozen=True)
class IndexRows:
    """What each row of the vector index stands for."""

    codes: Sequence[str]
    texts: Sequence[str]


class Retriever:
    def __init__(
        self,
        encoder: Encoder,
        index: VectorIndex,
        rows: IndexRows,
        descriptions: Mapping[str, str],
        *,
        catalogue_version: str,
        top_k: int = 20,
    ) -> None:
        self._encoder = encoder
        self._index = index
        self._rows = rows
        self._descriptions = descriptions
        self.catalogue_version = catalogue_version
        self.top_k = top_k

    def retrieve(self, note: SegmentedNote) -> RetrievedNote:
        started = time.perf_counter()
        queries: list[str] = []
        owner: list[int] = []
        for i, span in enumerate(note.spans):
            for text in query_texts(span):
                queries.append(text)
                owner.append(i)
        per_span: list[dict[str, Candidate]] = [{} for _ in note.spans]
        if queries:
            vectors = self._encoder.encode(queries)
            scores, ids = self._index.search(vectors, self.top_k * OVERFETCH)
            for q, span_index in enumerate(owner):
                self._collect(per_span[span_index], scores[q], ids[q])
        items = [
            SpanCandidates(span=span, candidates=self._ranked(found))
            for span, found in zip(note.spans, per_span, strict=True)
        ]
        return RetrievedNote(
            note_id=note.note_id,
            text=note.text,
            catalogue_version=self.catalogue_version,
            items=items,
            timings={**note.timings, "retriever": time.perf_counter() - started},
        )

    def _collect(
        self, found: dict[str, Candidate], scores: Vectors, ids: npt.NDArray[np.int64]
    ) -> None:
        for score, row in zip(scores.tolist(), ids.tolist(), strict=True):
            if row < 0:
                continue
            code = self._rows.codes[row]
            best = found.get(code)
            if best is None or score > best.score:
                found[code] = Candidate(
                    code=code,
                    description=self._descriptions[code],
                    score=round(float(score), 6),
                    matched=self._rows.texts[row],
                )

    def _ranked(self, found: dict[str, Candidate]) -> list[Candidate]:
        ranked = sorted(found.values(), key=lambda c: (-c.score, c.code))
        return ranked[: self.top_k]
