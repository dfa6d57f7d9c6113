"""Fitting the retrieval re-ranker (``services/retriever/rerank.py``) on a coded corpus.

The corpus is retrieved with each span's first ``pool`` codes by cosine. A row is one code of
one span's pool, labelled 1 when the case is coded with it: the corpus says which codes a note
carries, not which span says each, so a gold code counts in every span that found it. The
trees are scikit-learn's ``HistGradientBoostingClassifier``, exported as the note model's are.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from icdcoder.services.retriever.rerank import (
    FEATURES,
    CodeTraits,
    Pooled,
    Reranker,
    pool_rows,
    pool_support,
)
from icdcoder.shared.messages import RetrievedNote, SpanCandidates
from icdcoder.training.corpus import CodedCase
from icdcoder.training.note_fit import boosted_trees

#: The trees' settings: on dev, 15 leaves kept as many gold codes as 31 (0.811 of the pairs
#: with every span searched) in shallower trees, which every span's pool walks.
RERANK_PARAMS: dict[str, float | int] = {
    "max_iter": 300,
    "learning_rate": 0.1,
    "max_leaf_nodes": 15,
    "min_samples_leaf": 50,
}

Matrix = npt.NDArray[np.float64]


def _pool(item: SpanCandidates, size: int) -> list[Pooled]:
    return [Pooled(c.code, c.score, c.matched == c.description) for c in item.candidates[:size]]


def rerank_rows(
    cases: Sequence[CodedCase], notes: Sequence[RetrievedNote], traits: CodeTraits, pool: int
) -> tuple[Matrix, Matrix]:
    """``x`` (:data:`FEATURES`) and the labels, one row per code of each span's pool."""
    x: list[tuple[float, ...]] = []
    y: list[float] = []
    for case, note in zip(cases, notes, strict=True):
        if case.case_id != note.note_id:
            raise ValueError(f"case {case.case_id} is paired with note {note.note_id}")
        gold = case.gold()
        pools = [_pool(item, pool) for item in note.items]
        support = pool_support(pools)
        for item, pooled in zip(note.items, pools, strict=True):
            x.extend(pool_rows(len(item.span.text.split()), pooled, support, traits))
            y.extend(float(p.code.lower() in gold) for p in pooled)
    return np.array(x, dtype=np.float64).reshape(-1, len(FEATURES)), np.array(y, dtype=np.float64)


def fit_reranker(
    x: Matrix,
    y: Matrix,
    pool: int,
    params: Mapping[str, float | int] = RERANK_PARAMS,
    *,
    fitted_on: str = "",
) -> dict[str, Any]:
    """The weights file's ``retrieval`` section: trees over :data:`FEATURES`, the pool, and
    what they were fitted on."""
    trees = boosted_trees(x, y, params, "retrieval re-ranker")
    return {
        "pool": pool,
        "features": list(FEATURES),
        "params": dict(params),
        "provenance": {
            "fitted_on": fitted_on,
            "rows": len(y),
            "positives": int(y.sum()),
            "tool": "icdcoder train --rerank",
        },
        "trees": trees,
    }


def reranked(
    notes: Sequence[RetrievedNote], reranker: Reranker, traits: CodeTraits, top_k: int
) -> Iterator[RetrievedNote]:
    """The notes as a retriever with ``reranker`` returns them: each span's ``top_k`` best of
    its pool (the notes retrieved with at least ``reranker.pool`` candidates a span)."""
    for note in notes:
        pools = [_pool(item, reranker.pool) for item in note.items]
        words = [len(item.span.text.split()) for item in note.items]
        kept = reranker.keep(pools, words, traits, top_k)
        items = [
            item.model_copy(update={"candidates": [item.candidates[i] for i in places]})
            for item, places in zip(note.items, kept, strict=True)
        ]
        yield note.model_copy(update={"items": items})
