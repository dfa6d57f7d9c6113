"""A note classifier learnt from the memory's coded notes: how much a note reads like the notes
that carry each code.

One logistic regression per code (one-vs-rest, TF-IDF word vectors, classes balanced) for every
code that at least ``min_notes`` coded notes carry. Where :mod:`similar_notes` votes with the
nearest few notes, the classifier weighs every word of every coded note for or against the code.
The note re-ranker reads its log-odds as a feature (``classifier``, with ``classified`` saying
whether the code has a model at all); it never adds a code no span retrieved.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.linear_model import LogisticRegression

from icdcoder.services.verifier.similar_notes import note_vectorizer
from icdcoder.shared.memory import MemoryNote

#: Log-odds are clipped to this bound: a feature, not a verdict.
BOUND = 8.0


class NoteClassifier:
    def __init__(self, notes: Sequence[MemoryNote], min_notes: int = 2, c: float = 4.0) -> None:
        if not notes:
            raise ValueError("a note classifier needs at least one coded note")
        self._tfidf = note_vectorizer(len(notes))
        matrix = self._tfidf.fit_transform([note.text for note in notes])
        carried: dict[str, list[int]] = {}
        for i, note in enumerate(notes):
            for code in set(note.codes):
                carried.setdefault(code, []).append(i)
        self.codes = sorted(
            code for code, rows in carried.items() if min_notes <= len(rows) < len(notes)
        )
        coef = np.zeros((len(self.codes), matrix.shape[1]))
        intercept = np.zeros(len(self.codes))
        for j, code in enumerate(self.codes):
            labels = np.zeros(len(notes))
            labels[carried[code]] = 1.0
            model = LogisticRegression(C=c, solver="liblinear", class_weight="balanced")
            model.fit(matrix, labels)
            coef[j], intercept[j] = model.coef_[0], model.intercept_[0]
        # (words x codes), contiguous: a sparse row times it takes 0.1 ms, its transpose 40 ms
        self._coef = np.ascontiguousarray(coef.T)
        self._intercept = intercept

    def __len__(self) -> int:
        return len(self.codes)

    def votes(self, text: str) -> dict[str, float]:
        """Each modelled code's log-odds for this note, clipped to +-:data:`BOUND`."""
        if not self.codes:
            return {}
        z = np.asarray(self._tfidf.transform([text]) @ self._coef).ravel() + self._intercept
        return dict(zip(self.codes, np.clip(z, -BOUND, BOUND).tolist(), strict=True))
