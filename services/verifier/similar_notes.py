"""Similar coded notes: the codes of the memory's notes that read most like this one.

A coding team's archive of coded notes votes for the codes of its nearest notes (k nearest
neighbours over TF-IDF word vectors, cosine similarity). A code's vote is the similarity-weighted
share of the ``neighbours`` nearest notes that carry it, in [0, 1]. The note re-ranker reads it
as one feature (``similar_notes``); it never adds a code no span retrieved, and the neighbours'
texts never reach the output.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

from icdcoder.shared.memory import MemoryNote


def note_vectorizer(notes: int) -> TfidfVectorizer:
    """How coded notes become word vectors: sublinear tf, English stop words, words seen in 2+
    notes (1+ for a memory of 20 notes or fewer)."""
    return TfidfVectorizer(sublinear_tf=True, stop_words="english", min_df=2 if notes > 20 else 1)


class SimilarNotes:
    def __init__(self, notes: Sequence[MemoryNote], neighbours: int = 10) -> None:
        if not notes:
            raise ValueError("similar notes need at least one coded note")
        self._codes = [note.codes for note in notes]
        self._sources = np.array([note.source for note in notes])
        self._neighbours = neighbours
        self._tfidf = note_vectorizer(len(notes))
        self._matrix = self._tfidf.fit_transform([note.text for note in notes])

    def __len__(self) -> int:
        return len(self._codes)

    def votes(self, text: str, *, exclude_source: str | None = None) -> dict[str, float]:
        """Each code's similarity-weighted share among the nearest notes (``exclude_source``:
        leave that note out, for fitting on the memory's own notes)."""
        sims = (self._matrix @ self._tfidf.transform([text]).T).toarray().ravel()
        if exclude_source is not None:
            sims[self._sources == exclude_source] = -np.inf
        nearest = [int(i) for i in np.argsort(-sims)[: self._neighbours] if sims[i] > 0]
        total = float(sum(sims[i] for i in nearest))
        votes: dict[str, float] = {}
        for i in nearest:
            for code in self._codes[i]:
                votes[code] = votes.get(code, 0.0) + float(sims[i]) / total
        return votes
