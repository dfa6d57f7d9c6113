"""Test doubles at the seams: a bag-of-words encoder and a brute-force vector index."""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from icdcoder.services.verifier.core import Verifier
from icdcoder.shared.catalogue import Catalogue
from icdcoder.shared.messages import ContextFlags, NoteIn, SegmentedNote, Span


class HashingEncoder:
    """Deterministic bag-of-words vectors: texts sharing words are near each other."""

    def __init__(self, dim: int = 256) -> None:
        self.dim = dim

    def encode(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in re.findall(r"[a-z0-9]+", text.lower()):
                # crc32, not hash(): str hashes change per process (PYTHONHASHSEED)
                out[i, zlib.crc32(word.encode()) % self.dim] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-9)


class NumpyIndex:
    def __init__(self, vectors: npt.NDArray[np.float32]) -> None:
        self.vectors = vectors

    def search(
        self, queries: npt.NDArray[np.float32], k: int
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        scores = queries @ self.vectors.T
        k = min(k, self.vectors.shape[0])
        ids = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(scores, ids, axis=1).astype(np.float32), ids.astype(np.int64)


def make_span(
    text: str, note: str, span_id: str = "s0000", section: str = "", **flags: bool
) -> Span:
    """A span over the first occurrence of ``text`` in ``note``."""
    start = note.index(text)
    end = start + len(text)
    return Span(
        span_id=span_id,
        start=start,
        end=end,
        text=text,
        sentence_start=start,
        sentence_end=end,
        section=section,
        context=ContextFlags(**flags),
    )


def verifier_from(
    weights: Path, catalogue: Catalogue, *, memory: Path | None = None, **config: Any
) -> Verifier:
    """The verifier a pack with these weights (and memory) gives, settings as keywords."""
    from icdcoder.services.verifier.backends import make_verifier
    from icdcoder.services.verifier.weights import VerifierWeights
    from icdcoder.shared.memory import load_memory
    from icdcoder.shared.settings import VerifierConfig

    notes = load_memory(memory, catalogue).notes if memory is not None else ()
    return make_verifier(VerifierConfig(**config), catalogue, VerifierWeights.read(weights), notes)


def sentence_segmenter(family_prefix: str | None = None) -> Callable[[NoteIn], SegmentedNote]:
    """A segmenter of one span per ``.``-separated sentence; a sentence starting with
    ``family_prefix`` (when given) is a family span."""

    def segment(note: NoteIn) -> SegmentedNote:
        spans = []
        for i, match in enumerate(re.finditer(r"[^.]+", note.text)):
            text = match.group().strip()
            if not text:
                continue
            start = note.text.index(text, match.start())
            family = family_prefix is not None and text.startswith(family_prefix)
            spans.append(
                Span(
                    span_id=f"s{i:04d}",
                    start=start,
                    end=start + len(text),
                    text=text,
                    sentence_start=start,
                    sentence_end=start + len(text),
                    context=ContextFlags(family=family),
                )
            )
        return SegmentedNote(note_id=note.note_id, text=note.text, spans=spans)

    return segment
