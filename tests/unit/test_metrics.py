"""CodiEsp-D metrics against values computed by hand."""

from __future__ import annotations

import pytest

from icdcoder.metrics import (
    Confusion,
    always_valid,
    average_precision,
    candidate_hits,
    candidate_recall,
    case_confusion,
    category_form,
    edition_mapped,
    gold_form,
    gold_pairs,
    invalid_gold,
    label_confusions,
    macro_prf,
    mean_average_precision,
    micro_confusion,
    rank_codes,
)
from icdcoder.shared.codes import InvalidCodeError

# Stand-ins with the shape of real codes: a, b, c are gold; x is a wrong guess.
A, B, C, D, X = "e11.9", "i10", "n23", "r51.9", "z00.00"


# --- code forms -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("E11.9", "e11.9"), ("n23", "n23"), ("E119", "e11.9"), (" s02.0xxa ", "s02.0xxa")],
)
def test_gold_form(raw: str, expected: str) -> None:
    assert gold_form(raw) == expected


def test_gold_form_rejects_non_codes() -> None:
    with pytest.raises(InvalidCodeError):
        gold_form("diabetes")


def test_category_form() -> None:
    assert category_form("E11.9") == "e11"
    assert category_form("n23") == "n23"


# --- ranking --------------------------------------------------------------------------------


def test_rank_codes_by_confidence_then_code() -> None:
    scored = [("I10", 0.5), ("A00.0", 0.9), ("E11.9", 0.5)]
    assert rank_codes(scored) == ["a00.0", "e11.9", "i10"]


def test_rank_codes_keeps_a_repeated_code_once_at_its_best_confidence() -> None:
    scored = [("E11.9", 0.2), ("I10", 0.5), ("e119", 0.9)]
    assert rank_codes(scored) == ["e11.9", "i10"]


# --- average precision and MAP --------------------------------------------------------------


def test_average_precision_worked_example() -> None:
    # hits at ranks 1 and 3: (1/1 + 2/3) / |gold| = (5/3) / 3
    assert average_precision([A, X, B], {A, B, C}) == pytest.approx(5 / 9)
    assert average_precision([A, X, B], {A, B, C}) == pytest.approx(0.5556, abs=1e-4)


def test_average_precision_counts_every_gold_code_even_if_never_predicted() -> None:
    assert average_precision([X, A], {A}) == pytest.approx(1 / 2)
    assert average_precision([A], {A, B}) == pytest.approx(1 / 2)
    assert average_precision([A, B], {A, B}) == pytest.approx(1.0)
    assert average_precision([B, A], {A, B}) == pytest.approx(1.0)


def test_average_precision_duplicate_predictions_count_once_and_take_no_rank() -> None:
    # [a, a, b] ranks as [a, b]: (1/1 + 2/2) / 2
    assert average_precision([A, A, B], {A, B}) == pytest.approx(1.0)
    # the duplicate x would otherwise push b to rank 4: (1/1 + 2/3) / 2
    assert average_precision([A, X, X, B], {A, B}) == pytest.approx(5 / 6)


def test_average_precision_empty_predictions_and_empty_gold() -> None:
    assert average_precision([], {A}) == 0.0
    assert average_precision([A], set()) == 0.0


def test_map_skips_cases_without_gold_and_scores_unpredicted_cases_zero() -> None:
    predicted = {"c1": [A, X, B], "c2": [], "c3": [A]}
    gold = {"c1": [A, B, C], "c2": [A], "c3": [], "c4": [B]}
    # c1: 5/9; c2 (no predictions): 0; c3 (no gold): skipped; c4 (absent): 0
    assert mean_average_precision(predicted, gold) == pytest.approx((5 / 9) / 3)


def test_map_over_predicted_cases_only_as_the_official_script() -> None:
    predicted = {"c1": [A, X, B], "c2": [], "c3": [A]}
    gold = {"c1": [A, B, C], "c2": [A], "c3": [], "c4": [B]}
    assert mean_average_precision(predicted, gold, predicted_cases_only=True) == pytest.approx(
        5 / 9
    )


def test_map_without_gold_cases_is_zero() -> None:
    assert mean_average_precision({"c1": [A]}, {"c1": []}) == 0.0
    assert mean_average_precision({}, {}) == 0.0


# --- precision, recall, F1 ------------------------------------------------------------------

# c1 gold {a, b} pred {a, c}; c2 gold {a} pred {a, b}; c3 gold {c} pred {}; c4 gold {d} pred {d, a}
PRED = {"c1": [A, C], "c2": [A, B], "c3": [], "c4": [D, A]}
GOLD = {"c1": [A, B], "c2": [A], "c3": [C], "c4": [D]}


def test_case_confusion_counts_distinct_codes() -> None:
    assert case_confusion([A, A, X], [A, B, B]) == Confusion(tp=1, fp=1, fn=1)


def test_micro_by_hand() -> None:
    # c1: tp1 fp1 fn1; c2: tp1 fp1; c3: fn1; c4: tp1 fp1
    total = micro_confusion(PRED, GOLD)
    assert total == Confusion(tp=3, fp=3, fn=2)
    assert total.precision == pytest.approx(3 / 6)
    assert total.recall == pytest.approx(3 / 5)
    assert total.f1 == pytest.approx(6 / 11)  # 2tp / (2tp + fp + fn)


def test_micro_counts_predictions_for_cases_without_gold_as_false_positives() -> None:
    assert micro_confusion({"c1": [A], "c9": [B]}, {"c1": [A]}) == Confusion(tp=1, fp=1)


def test_label_confusions_by_hand() -> None:
    assert label_confusions(PRED, GOLD) == {
        A: Confusion(tp=2, fp=1),  # c1, c2 hits; c4 false alarm
        B: Confusion(fp=1, fn=1),  # missed in c1, guessed in c2
        C: Confusion(fp=1, fn=1),  # guessed in c1, missed in c3
        D: Confusion(tp=1),
    }


def test_macro_by_hand() -> None:
    # per label (P, R, F1): a (2/3, 1, 0.8), b (0, 0, 0), c (0, 0, 0), d (1, 1, 1)
    scores = macro_prf(PRED, GOLD)
    assert scores.precision == pytest.approx((2 / 3 + 1) / 4)
    assert scores.recall == pytest.approx((1 + 1) / 4)
    assert scores.f1 == pytest.approx((0.8 + 1) / 4)


def test_prf_with_nothing_to_count_is_zero() -> None:
    empty = micro_confusion({}, {})
    assert (empty.precision, empty.recall, empty.f1) == (0.0, 0.0, 0.0)
    assert macro_prf({}, {}).f1 == 0.0
    assert micro_confusion({"c1": []}, {"c1": [A]}).recall == 0.0


# --- candidate recall -----------------------------------------------------------------------

CAND_GOLD = {"c1": ["e11.9", "i10", "n23"], "c2": ["r51.9"], "c3": ["k59.00"]}
CANDIDATES = {
    "c1": [["E11.65", "E11.9", "E11.8"], ["I11.9", "I10"], ["N20.0"]],
    "c2": [["R51.0"]],
    # c3: no spans at all
}


@pytest.mark.parametrize(
    ("k", "exact", "category"),
    [
        # top-1 {e11.65, i11.9, n20.0, r51.0}: no exact hit; categories e11 and r51 hit
        (1, 0, 2),
        # top-2 adds e11.9 and i10 (exact); category i10 as well
        (2, 2, 3),
        (5, 2, 3),
        (20, 2, 3),
    ],
)
def test_candidate_recall_by_hand(k: int, exact: int, category: int) -> None:
    pairs = 5
    assert candidate_recall(CANDIDATES, CAND_GOLD, k) == pytest.approx(exact / pairs)
    assert candidate_recall(CANDIDATES, CAND_GOLD, k, level="category") == pytest.approx(
        category / pairs
    )


def test_candidate_hits_category_level_counts_each_gold_code_of_the_category() -> None:
    assert candidate_hits([["E11.8"]], ["e11.9", "e11.65", "i10"], 1, level="category") == 2
    assert candidate_hits([["E11.8"]], ["e11.9", "e11.65", "i10"], 1) == 0


def test_candidate_hits_counts_a_repeated_gold_code_once() -> None:
    assert candidate_hits([["I10"], ["I10"]], ["i10", "i10"], 5) == 1


def test_candidate_recall_rejects_k_below_one() -> None:
    with pytest.raises(ValueError, match="k must be at least 1"):
        candidate_recall(CANDIDATES, CAND_GOLD, 0)


def test_candidate_recall_without_gold_is_zero() -> None:
    assert candidate_recall(CANDIDATES, {}, 5) == 0.0


# --- gold standard --------------------------------------------------------------------------


def test_invalid_gold_lists_each_case_code_pair() -> None:
    gold = {"c1": ["s02.0xx", A, "s02.0xx"], "c2": ["s02.0xx"], "c3": [B]}
    assert invalid_gold(gold, lambda code: code != "s02.0xx") == ["s02.0xx", "s02.0xx"]
    assert invalid_gold(gold) == []  # default: every code counts as valid
    assert gold_pairs(gold) == 4  # the invalid ones stay in the denominator


def test_edition_mapped_counts_a_prediction_under_an_older_editions_gold_code() -> None:
    older = {"r51", "t14.8", "m54.5"}  # codes then, categories (or 7th-character stems) now
    predicted = {"a": ["r51.9", "r51.0", "i10", "t14.8xxa"], "b": ["m54.50", "r51.9"]}
    gold = {"a": ["r51", "t14.8", "i10"], "b": ["m54.50"]}
    mapped = edition_mapped(predicted, gold, lambda code: code not in older)
    # under an older gold code: renamed to it (a repeat then takes no rank); others unchanged
    assert mapped == {"a": ["r51", "r51", "i10", "t14.8"], "b": ["m54.50", "r51.9"]}
    assert mean_average_precision(mapped, gold) == 1.0
    assert average_precision(predicted["a"], gold["a"]) == pytest.approx(1 / 9)  # i10 third
    assert edition_mapped(predicted, gold, always_valid) == predicted  # current gold: as is
