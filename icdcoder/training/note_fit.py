"""The note model's fit: one row per (case, code its spans may produce), trees or logistic.

Rows are :data:`~icdcoder.services.verifier.note_model.NOTE_FEATURES` exactly as
:meth:`SimilarityVerifier.note_rows` computes them with the new span weights; a row's label is
whether the code is among the case's gold codes. With an example memory, what its coded notes
tell the model must not include the case's own note:

- similar-notes votes leave the case's own coded note out (leave-one-case-out);
- the note classifier and the coded-notes counts are cross-fitted: the memory's notes are split
  into :data:`FOLDS` folds by case id, and a case is scored by the classifier learnt without its
  fold, its codes counted among the other folds' notes and scaled to the whole memory (a refit
  per case would take minutes).

Which of them the model sees follows the verifier settings (``similar_notes``,
``note_classifier``), as at run time.
"""

from __future__ import annotations

import sys
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt

from icdcoder.services.verifier.note_model import NOTE_FEATURES, count_coded_notes
from icdcoder.services.verifier.similarity import SimilarityVerifier
from icdcoder.services.verifier.span_model import note_support
from icdcoder.shared.memory import MemoryNote
from icdcoder.shared.messages import RetrievedNote
from icdcoder.shared.settings import VerifierConfig
from icdcoder.training.corpus import CodedCase
from icdcoder.training.retrieval import example_owner
from icdcoder.training.span_fit import fit_logistic

Matrix = npt.NDArray[np.float64]

FOLDS = 10

#: Boosting settings when the base has no trees: the best pool MAP of 5-fold cross-validation
#: on CodiEsp train (by case) among 200/300/400 trees of 15 leaves and 300 of 31 (0.423-0.427),
#: with the example memory.
TREE_PARAMS: dict[str, float | int] = {
    "max_iter": 300,
    "learning_rate": 0.05,
    "max_leaf_nodes": 31,
    "min_samples_leaf": 100,
    "l2_regularization": 1.0,
}


def fold(case_id: str) -> int:
    return zlib.crc32(case_id.encode()) % FOLDS


class LeaveOut:
    """Similar-notes votes without one note of the memory."""

    def __init__(self, notes: Any, source: str) -> None:
        self.notes, self.source = notes, source

    def votes(self, text: str) -> dict[str, float]:
        votes: dict[str, float] = self.notes.votes(text, exclude_source=self.source)
        return votes


class CrossFitted:
    """Note classifiers and code counts each learnt without one fold of the memory's notes."""

    def __init__(self, notes: Sequence[MemoryNote], classifier: bool, progress: bool) -> None:
        from tqdm import tqdm

        from icdcoder.services.verifier.note_classifier import NoteClassifier

        owner = [example_owner(note.source) for note in notes]
        folds = [
            [n for n, o in zip(notes, owner, strict=True) if fold(o) != k] for k in range(FOLDS)
        ]
        self.models = (
            [
                NoteClassifier(kept)
                for kept in tqdm(
                    folds, desc="note classifiers", file=sys.stderr, disable=not progress
                )
            ]
            if classifier
            else None
        )
        self.counts = [
            {
                code: n * len(notes) / len(kept)
                for code, n in count_coded_notes(note.codes for note in kept).items()
            }
            for kept in folds
        ]

    def classifier_without(self, case_id: str) -> Any:
        return self.models[fold(case_id)] if self.models is not None else None

    def counts_without(self, case_id: str) -> dict[str, float]:
        return self.counts[fold(case_id)]


def note_rows(
    cases: Sequence[CodedCase],
    notes: Sequence[RetrievedNote],
    verifier: SimilarityVerifier,
    memory_notes: Sequence[MemoryNote],
    config: VerifierConfig,
    *,
    progress: bool = True,
) -> tuple[Matrix, Matrix]:
    """``x`` (:data:`NOTE_FEATURES`, no bias column) and the labels, each case's own coded
    note left out of what the memory says about it."""
    similar = None
    crossed = None
    sources: dict[str, str] = {}
    if memory_notes:
        from icdcoder.services.verifier.similar_notes import SimilarNotes

        if config.similar_notes:
            similar = SimilarNotes(memory_notes, neighbours=config.similar_notes)
        crossed = CrossFitted(memory_notes, config.note_classifier, progress)
        sources = {example_owner(note.source): note.source for note in memory_notes}
    x: list[tuple[float, ...]] = []
    y: list[float] = []
    for case, note in zip(cases, notes, strict=True):
        if case.case_id != note.note_id:
            raise ValueError(f"case {case.case_id} is paired with note {note.note_id}")
        gold = case.gold()
        counts = note_support(note.items, verifier.considered)
        own = sources.get(case.case_id, f"-:{case.case_id}")
        scorer = replace(
            verifier,
            similar_notes=LeaveOut(similar, own) if similar else None,
            note_classifier=crossed.classifier_without(case.case_id) if crossed else None,
            coded_notes=crossed.counts_without(case.case_id) if crossed else {},
        )
        for code, row in scorer.note_rows(note, counts).items():
            x.append(row.features())
            y.append(float(code.lower() in gold))
    matrix = np.array(x, dtype=np.float64).reshape(-1, len(NOTE_FEATURES))
    return matrix, np.array(y, dtype=np.float64)


def boosted_trees(
    x: Matrix, y: Matrix, params: Mapping[str, float | int], model: str
) -> dict[str, Any]:
    """scikit-learn's gradient-boosted trees fitted on the rows, exported as JSON
    (:mod:`icdcoder.services.verifier.boosted` evaluates them); ``model`` names them in the
    error when the rows hold one class only."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    from icdcoder.services.verifier.boosted import export_sklearn

    if len(set(y.tolist())) < 2:
        raise ValueError(f"the {model} needs both gold and other codes among the rows")
    fitted = HistGradientBoostingClassifier(**params, early_stopping=False, random_state=0)
    fitted.fit(x, y)
    return export_sklearn(fitted)


def fit_trees(x: Matrix, y: Matrix, params: Mapping[str, float | int]) -> dict[str, Any]:
    """Gradient-boosted trees over the note features."""
    trees = boosted_trees(x, y, params, "note model")
    return {"features": list(NOTE_FEATURES), "params": dict(params), "trees": trees}


def fit_note_logistic(x: Matrix, y: Matrix) -> dict[str, Any]:
    """Logistic note weights (Newton, as the span model), rounded to 4 decimals."""
    with_bias = np.hstack([np.ones((x.shape[0], 1)), x])
    w = fit_logistic(with_bias, y)
    names = ["bias", *NOTE_FEATURES]
    return {name: round(float(v), 4) for name, v in zip(names, w, strict=True)}
