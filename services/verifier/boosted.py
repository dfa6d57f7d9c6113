"""Boosted trees for the note re-ranker, stored as plain JSON and evaluated with numpy.

``bench/levers.py fit-note --trees`` fits scikit-learn's ``HistGradientBoostingClassifier`` on
train over the :data:`~icdcoder.services.verifier.core.NOTE_FEATURES` and writes its trees into the
weights file (the ``note`` section's ``trees``): no pickle, nothing that depends on the
scikit-learn version at run time. A tree is four flat lists (the feature a node splits on, its
threshold, its two children; a leaf is a node whose children are -1) and the leaves' values.
A row goes left where its value is at most the threshold, as scikit-learn's own predictor does.

All rows walk all trees at once, one level a step. The trees are held deepest first, so a step
walks only the trees still deeper than it (the model's trees are 5 to 12 splits deep: walking
every tree to the deepest one's leaves took half as long again, docs/throughput.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class BoostedTrees:
    """The sum of trees' leaf values plus a baseline: the log-odds of a code being gold."""

    baseline: float
    #: All trees' nodes in one array each, deepest tree first; ``roots`` says where each starts.
    feature: npt.NDArray[np.intp]
    threshold: npt.NDArray[np.float64]
    left: npt.NDArray[np.intp]
    right: npt.NDArray[np.intp]
    value: npt.NDArray[np.float64]
    roots: npt.NDArray[np.intp]
    #: Step ``s`` of the walk moves the first ``walking[s]`` trees (those deeper than ``s``).
    walking: tuple[int, ...]
    n_features: int

    @classmethod
    def from_json(
        cls, data: Mapping[str, Any], n_features: int, columns: Sequence[int] | None = None
    ) -> BoostedTrees:
        """Trees from a weights file's ``trees`` section, as :func:`export_sklearn` writes it.

        ``columns[f]`` is where the trees' feature ``f`` sits in a row of ``n_features`` (None:
        at ``f``), so trees fitted on some of the features read rows of all of them."""
        trees = data["trees"]
        width = n_features if columns is None else len(columns)
        if not trees:
            raise ValueError("boosted trees: the model has no trees")
        feature: list[int] = []
        threshold: list[float] = []
        left: list[int] = []
        right: list[int] = []
        value: list[float] = []
        roots: list[int] = []
        for tree in trees:
            _check(tree, width)
        depths = [_depth(tree["left"], tree["right"]) for tree in trees]
        for t in sorted(range(len(trees)), key=lambda t: -depths[t]):
            tree = trees[t]
            offset = len(feature)
            roots.append(offset)
            lists = (tree["feature"], tree["threshold"], tree["left"], tree["right"])
            for f, th, lo, hi, v in zip(*lists, tree["value"], strict=True):
                leaf = lo < 0
                feature.append(0 if leaf else int(f) if columns is None else columns[int(f)])
                threshold.append(float(th))
                # a leaf points at itself, so walking further down stays on it
                node = len(feature) - 1
                left.append(node if leaf else offset + int(lo))
                right.append(node if leaf else offset + int(hi))
                value.append(float(v))
        return cls(
            baseline=float(data["baseline"]),
            feature=np.array(feature, dtype=np.intp),
            threshold=np.array(threshold),
            left=np.array(left, dtype=np.intp),
            right=np.array(right, dtype=np.intp),
            value=np.array(value),
            roots=np.array(roots, dtype=np.intp),
            walking=tuple(sum(d > step for d in depths) for step in range(max(depths))),
            n_features=n_features,
        )

    def log_odds(self, rows: Sequence[Sequence[float]]) -> npt.NDArray[np.float64]:
        """The model's log-odds for each row of features."""
        x = np.asarray(rows, dtype=np.float64).reshape(-1, self.n_features)
        flat = x.ravel()
        # where each row's features start in ``flat``
        starts = np.arange(x.shape[0]) * self.n_features
        # one row per tree, one column per row of features: a step's trees are contiguous
        nodes = np.repeat(self.roots[:, None], x.shape[0], axis=1)
        for width in self.walking:
            walked = nodes[:width]
            goes_left = flat[self.feature[walked] + starts] <= self.threshold[walked]
            nodes[:width] = self._children[2 * walked + goes_left]
        scores: npt.NDArray[np.float64] = self.baseline + self.value[nodes].sum(axis=0)
        return scores

    @cached_property
    def _children(self) -> npt.NDArray[np.intp]:
        """Node ``k``'s right child at ``2k``, its left at ``2k + 1`` (one gather a step)."""
        return np.stack([self.right, self.left], axis=1).ravel()

    def confidences(self, rows: Sequence[Sequence[float]]) -> list[float]:
        return [1.0 / (1.0 + math.exp(-z)) for z in self.log_odds(rows).tolist()]


def _check(tree: Mapping[str, Any], width: int) -> None:
    """Refuse a tree whose node lists differ in length or whose nodes point outside it."""
    size = len(tree["value"])
    lists = (tree["feature"], tree["threshold"], tree["left"], tree["right"])
    if any(len(nodes) != size for nodes in lists):
        raise ValueError("boosted trees: a tree's node lists differ in length")
    for f, lo, hi in zip(tree["feature"], tree["left"], tree["right"], strict=True):
        if lo >= 0 and not (0 <= f < width and 0 < lo < size and 0 < hi < size):
            raise ValueError("boosted trees: a node points outside its tree")


def _depth(left: Sequence[int], right: Sequence[int]) -> int:
    """The number of splits on the longest path from the root (node 0) to a leaf."""
    deepest, stack = 0, [(0, 0)]
    while stack:
        node, depth = stack.pop()
        if left[node] < 0:
            deepest = max(deepest, depth)
            continue
        if depth > len(left):
            raise ValueError("boosted trees: a tree has a cycle")
        stack += [(left[node], depth + 1), (right[node], depth + 1)]
    return deepest


def export_sklearn(model: Any) -> dict[str, Any]:
    """The ``trees`` section for a fitted binary ``HistGradientBoostingClassifier`` (bench only:
    scikit-learn's private predictor arrays, read once at fit time)."""
    trees = []
    for (predictor,) in model._predictors:
        nodes = predictor.nodes
        leaf = nodes["is_leaf"].astype(bool)
        trees.append(
            {
                "feature": [int(f) for f in nodes["feature_idx"]],
                "threshold": [float(t) for t in nodes["num_threshold"]],
                "left": np.where(leaf, -1, nodes["left"]).tolist(),
                "right": np.where(leaf, -1, nodes["right"]).tolist(),
                "value": np.where(leaf, nodes["value"], 0.0).round(6).tolist(),
            }
        )
    return {"baseline": float(np.ravel(model._baseline_prediction)[0]), "trees": trees}
