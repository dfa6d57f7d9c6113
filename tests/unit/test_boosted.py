"""The re-ranker's boosted trees: JSON in, the same log-odds as scikit-learn out."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier

from icdcoder.services.verifier.boosted import BoostedTrees, export_sklearn
from icdcoder.services.verifier.note_model import (
    LATER_NOTE_FEATURES,
    NOTE_FEATURES,
    LogisticNoteModel,
    note_model_from_dict,
)
from icdcoder.services.verifier.similarity import SimilarityVerifier
from icdcoder.shared.catalogue import Catalogue
from tests.fakes import verifier_from

# one split on feature 1 at 0.5, then a split on feature 0 at 2.0 on the right
STUMPS = {
    "baseline": -1.0,
    "trees": [
        {
            "feature": [1, 0, 0, 0, 0],
            "threshold": [0.5, 0.0, 2.0, 0.0, 0.0],
            "left": [1, -1, 3, -1, -1],
            "right": [2, -1, 4, -1, -1],
            "value": [0.0, -0.5, 0.0, 0.25, 1.5],
        },
        {"feature": [0], "threshold": [0.0], "left": [-1], "right": [-1], "value": [0.125]},
    ],
}


def test_trees_walk_left_at_or_below_the_threshold_and_add_up_with_the_baseline() -> None:
    trees = BoostedTrees.from_json(STUMPS, n_features=2)
    rows = [[0.0, 0.5], [2.0, 0.6], [2.1, 0.6]]
    assert trees.log_odds(rows).tolist() == [-1.375, -0.625, 0.625]
    assert trees.confidences(rows)[2] == pytest.approx(1 / (1 + math.exp(-0.625)))


def test_exported_trees_reproduce_scikit_learn_decision_function() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 5))
    y = x[:, 0] * x[:, 1] + np.sin(3 * x[:, 2]) + rng.normal(scale=0.3, size=2000) > 0
    model = HistGradientBoostingClassifier(max_iter=30, max_leaf_nodes=8, random_state=0)
    model.fit(x, y.astype(float))
    exported = json.loads(json.dumps(export_sklearn(model)))  # through JSON, as shipped
    trees = BoostedTrees.from_json(exported, n_features=5)
    test = rng.normal(size=(500, 5))
    assert np.allclose(trees.log_odds(test), model.decision_function(test), atol=1e-4)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"left": [1, -1, 3, -1, 9]}, "outside its tree"),
        ({"feature": [7, 0, 0, 0, 0]}, "outside its tree"),
        ({"value": [0.0]}, "differ in length"),
    ],
)
def test_malformed_trees_are_refused(change: dict[str, list[float]], message: str) -> None:
    broken = {"baseline": 0.0, "trees": [STUMPS["trees"][0] | change]}
    with pytest.raises(ValueError, match=message):
        BoostedTrees.from_json(broken, n_features=2)


def test_a_weights_file_with_trees_gives_the_verifier_a_tree_reranker(
    tmp_path: Path, catalogue: Catalogue
) -> None:
    span_weights = {"bias": -6.0, "score": 1.0, "coverage": 1.0, "margin": 0.0}
    one_leaf = {"feature": [0], "threshold": [0.0], "left": [-1], "right": [-1], "value": [0.5]}
    note = {
        "features": list(NOTE_FEATURES),
        "trees": {"baseline": 0.25, "trees": [one_leaf]},
        "operating_point": {"accept_threshold": 0.4, "max_codes_per_note": 30},
    }
    weights = tmp_path / "w.json"
    weights.write_text(json.dumps(span_weights | {"note": note}))
    chosen = verifier_from(weights, catalogue)
    assert isinstance(chosen, SimilarityVerifier)
    assert isinstance(chosen.note_model, BoostedTrees)
    assert chosen.note_model.confidences([[0.0] * len(NOTE_FEATURES)]) == [
        pytest.approx(1 / (1 + math.exp(-0.75)))
    ]
    assert chosen.accept_threshold == 0.4 and chosen.max_codes_per_note == 30
    weights.write_text(json.dumps(span_weights | {"note": note | {"features": ["best"]}}))
    with pytest.raises(ValueError, match="other features"):
        verifier_from(weights, catalogue)


def test_trees_fitted_on_fewer_features_read_theirs_by_name() -> None:
    """A weights file from before LATER_NOTE_FEATURES scores rows of all the features the
    same: its trees' feature numbers index its own list, which need not be NOTE_FEATURES."""
    older = [name for name in NOTE_FEATURES if name not in LATER_NOTE_FEATURES][::-1]
    stump = {  # the file's feature 0 is its list's first name: coded_notes once reversed
        "feature": [0, 0, 0],
        "threshold": [0.5, 0.0, 0.0],
        "left": [1, -1, -1],
        "right": [2, -1, -1],
        "value": [0.0, -1.0, 1.0],
    }
    model = note_model_from_dict({"features": older, "trees": {"baseline": 0.0, "trees": [stump]}})
    row = [0.0] * len(NOTE_FEATURES)
    row[NOTE_FEATURES.index("coded_notes")] = 1.0
    assert model.confidences([row, [0.0] * len(NOTE_FEATURES)]) == [
        pytest.approx(1 / (1 + math.exp(-1.0))),
        pytest.approx(1 / (1 + math.exp(1.0))),
    ]
    # the later features may be absent, no other may
    with pytest.raises(ValueError, match="other features"):
        note_model_from_dict({"features": older[1:], "trees": {"baseline": 0.0, "trees": [stump]}})
    logistic = note_model_from_dict({"bias": 0.0} | {name: 1.0 for name in older})
    assert isinstance(logistic, LogisticNoteModel)
    assert [
        w
        for name, w in zip(NOTE_FEATURES, logistic.weights, strict=True)
        if name in LATER_NOTE_FEATURES
    ] == [0.0] * len(LATER_NOTE_FEATURES)
