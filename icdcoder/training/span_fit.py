"""The span model's fit: one row per (span, candidate), logistic regression by Newton's method.

Each of a span's first ``considered`` candidates (as many as the verifier scores) is a row of
:data:`~icdcoder.services.verifier.span_model.FEATURES`, computed exactly as the verifier
computes them (the span read in its family/historical context, the note's span support); its
label is whether the code is among the case's gold codes. The weights are rounded to 4 decimals,
as the weights file stores them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from icdcoder.services.verifier.span_model import FEATURES, note_support, span_features
from icdcoder.shared.context import contextual_text
from icdcoder.shared.messages import RetrievedNote
from icdcoder.training.corpus import CodedCase

Matrix = npt.NDArray[np.float64]


def span_rows(
    cases: Sequence[CodedCase], notes: Sequence[RetrievedNote], considered: int
) -> tuple[Matrix, Matrix]:
    """``x`` (column 0 the bias, then every feature of :data:`FEATURES`) and the labels."""
    x: list[list[float]] = []
    y: list[float] = []
    for case, note in zip(cases, notes, strict=True):
        if case.case_id != note.note_id:
            raise ValueError(f"case {case.case_id} is paired with note {note.note_id}")
        gold = case.gold()
        counts = note_support(note.items, considered)
        for item in note.items:
            cands = item.candidates[:considered]
            read_as = contextual_text(item.span) or item.span.text
            for cand, values in zip(cands, span_features(read_as, cands, counts), strict=True):
                x.append([1.0, *values])
                y.append(float(cand.code.lower() in gold))
    width = 1 + len(FEATURES)
    return np.array(x, dtype=np.float64).reshape(-1, width), np.array(y, dtype=np.float64)


def fit_logistic(x: Matrix, y: Matrix, l2: float = 1e-2) -> Matrix:
    """Logistic regression by Newton's method with a small L2 penalty (column 0: bias)."""
    w = np.zeros(x.shape[1])
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-(x @ w)))
        grad = x.T @ (p - y) + l2 * w
        hess = (x * (p * (1 - p))[:, None]).T @ x + l2 * np.eye(x.shape[1])
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-9:
            break
    return w


def fit_span(x: Matrix, y: Matrix, used: Sequence[str]) -> dict[str, float]:
    """Span weights over the ``used`` features (a subset of :data:`FEATURES`), rounded to 4
    decimals: ``{"bias": ..., feature: ...}``."""
    unknown = [name for name in used if name not in FEATURES]
    if unknown:
        raise ValueError(f"not span features: {', '.join(unknown)}")
    if not len(y):
        raise ValueError("no candidates to fit the span model on")
    ordered = [name for name in FEATURES if name in used]
    columns = [0, *(1 + FEATURES.index(name) for name in ordered)]
    w = fit_logistic(x[:, columns], y)
    return {name: round(float(v), 4) for name, v in zip(["bias", *ordered], w, strict=True)}
