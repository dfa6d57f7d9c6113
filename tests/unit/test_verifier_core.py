import asyncio
import json
import math
from pathlib import Path

import pytest

from icdcoder.services.verifier.note_model import (
    NO_SIBLING,
    NOTE_FEATURES,
    LogisticNoteModel,
    category_place,
)
from icdcoder.services.verifier.similarity import SimilarityVerifier
from icdcoder.shared.catalogue import Catalogue
from icdcoder.shared.context import stated_text
from icdcoder.shared.messages import Candidate, RetrievedNote, SpanCandidates
from icdcoder.shared.text import coverage, shared_words, stem
from tests.fakes import make_span, verifier_from

TEXT = "Type 2 diabetes mellitus without complications"


def cand(code: str, description: str, score: float, matched: str | None = None) -> Candidate:
    return Candidate(
        code=code, description=description, score=score, matched=matched or description
    )


def note_with(cands: list[Candidate], text: str = TEXT) -> RetrievedNote:
    span = make_span(text, text)
    return RetrievedNote(
        note_id="n1",
        text=text,
        catalogue_version="test",
        items=[SpanCandidates(span=span, candidates=cands)],
    )


def test_words_and_coverage() -> None:
    assert shared_words("Known type 2 diabetes, on insulin", "Type 2 diabetes mellitus") == [
        "2",
        "diabetes",
    ]
    assert coverage(TEXT, TEXT) == 1.0
    assert coverage("hypertension", "Essential (primary) hypertension") == 1 / 3
    # a femoral neck is the femur's: it covers S72.0's text, not S12.9's "neck" (the region)
    femoral_neck = "displaced fracture of the right femoral neck"
    assert coverage(femoral_neck, "Fracture of neck of femur") == 1.0
    assert coverage(femoral_neck, "Fracture of neck, unspecified") == 0.5
    assert coverage("left renal lithiasis", "Calculus of kidney") == 1.0
    # "site not specified" and "not elsewhere classified" are the catalogue's filler
    assert coverage("urinary tract infection", "Urinary tract infection, site not specified") == 1
    assert coverage("hemorrhage", "Hemorrhage, not elsewhere classified") == 1.0
    # a condition's abbreviation in capitals is spelled out; a word in lower case is left be
    assert coverage("DM", "Type 2 diabetes mellitus without complications") == 2 / 4
    assert coverage("dm", "Type 2 diabetes mellitus without complications") == 0.0


@pytest.mark.parametrize(
    ("word", "other"),
    [
        ("calculi", "calculus"),
        ("hypertension", "hypertensive"),
        ("hypertrophy", "hypertrophic"),
        ("fracture", "fractures"),
        ("hyperglycaemia", "hyperglycemia"),
        ("oedema", "edema"),
        ("haemorrhage", "hemorrhage"),
        ("hypercholesterolaemia", "hypercholesterolemia"),
        # an organ's adjective is its noun, a Greek name the title's English one
        ("renal", "kidney"),
        ("hepatic", "liver"),
        ("lithiasis", "calculus"),
        ("ii", "2"),  # "type II diabetes" is "Type 2 diabetes mellitus"
    ],
)
def test_inflections_and_spellings_share_a_stem(word: str, other: str) -> None:
    assert stem(word) == stem(other)


@pytest.mark.parametrize(
    ("word", "other"),
    [
        ("renal", "hepatic"),
        # a six-character prefix made these one word (E78.3 was accepted on the first)
        ("hypercholesterolemia", "hyperchylomicronemia"),
        ("hypercholesterolemia", "hypercalcemia"),
        ("hypertension", "hypertrophy"),
        ("pneumonia", "pneumothorax"),
    ],
)
def test_different_conditions_keep_different_stems(word: str, other: str) -> None:
    assert stem(word) != stem(other)
    assert coverage(word, other) == 0.0


def test_exact_description_accepted_with_justification() -> None:
    note = note_with(
        [
            cand("E11.9", TEXT, 0.97),
            cand("E11.8", "Type 2 diabetes mellitus with unspecified complications", 0.85),
            cand("E10.9", "Type 1 diabetes mellitus without complications", 0.80),
        ]
    )
    out = asyncio.run(SimilarityVerifier().verify(note))
    top = out.verdicts[0]
    assert (top.code, top.decision) == ("E11.9", "accept")
    assert "'diabetes'" in top.justification and "E11.9" in top.justification
    assert out.verifier.backend == "similarity" and "verifier" in out.timings
    # one code per span may be accepted; up to three are kept (the others as review)
    assert [v.decision for v in out.verdicts].count("accept") == 1
    assert sum(v.decision != "reject" for v in out.verdicts) <= 3
    assert out.verdicts == asyncio.run(SimilarityVerifier().verify(note)).verdicts  # deterministic


def test_weak_unrelated_match_rejected() -> None:
    note = note_with([cand("K21.9", "Gastro-esophageal reflux disease without esophagitis", 0.31)])
    out = asyncio.run(SimilarityVerifier().verify(note))
    assert [v.decision for v in out.verdicts] == ["reject"]
    assert "does not support" in out.verdicts[0].justification


def test_only_retrieved_codes_are_named() -> None:
    cands = [
        cand("I10", "Essential (primary) hypertension", 0.9),
        cand("I15.9", "Secondary hypertension, unspecified", 0.7),
    ]
    out = asyncio.run(SimilarityVerifier().verify(note_with(cands, "Essential hypertension")))
    assert {v.code for v in out.verdicts} <= {"I10", "I15.9"}


def test_threshold_moves_decision() -> None:
    note = note_with([cand("E11.9", TEXT, 0.80)])
    strict = SimilarityVerifier(accept_threshold=1.0, review_threshold=1.0)
    lax = SimilarityVerifier(accept_threshold=0.01, review_threshold=0.0)
    assert asyncio.run(strict.verify(note)).verdicts[0].decision == "reject"
    assert asyncio.run(lax.verify(note)).verdicts[0].decision == "accept"


def test_operating_point_travels_with_the_weights_and_settings_override_it(
    tmp_path: Path, catalogue: Catalogue
) -> None:
    weights = tmp_path / "w.json"
    weights.write_text(
        json.dumps(
            {
                "bias": -6.0,
                "score": 1.0,
                "coverage": 1.0,
                "margin": 0.0,
                "operating_point": {"accept_threshold": 0.2, "max_codes_per_span": 2},
            }
        )
    )
    chosen = verifier_from(weights, catalogue)
    assert isinstance(chosen, SimilarityVerifier)
    assert (chosen.accept_threshold, chosen.max_codes_per_span) == (0.2, 2)
    assert chosen.weights.bias == -6.0
    override = verifier_from(weights, catalogue, accept_threshold=0.5, max_codes_per_span=1)
    assert isinstance(override, SimilarityVerifier)
    assert (override.accept_threshold, override.max_codes_per_span) == (0.5, 1)
    weights.write_text(json.dumps({"bias": -6.0, "score": 1.0, "coverage": 1.0, "margin": 0.0}))
    plain = verifier_from(weights, catalogue)
    assert isinstance(plain, SimilarityVerifier)
    assert (plain.accept_threshold, plain.max_codes_per_span) == (0.10, 1)


def test_the_verifier_scores_as_many_candidates_as_its_weights_were_fitted_on(
    tmp_path: Path, catalogue: Catalogue
) -> None:
    weights = tmp_path / "w.json"
    span = {"bias": -6.0, "score": 1.0, "coverage": 1.0, "margin": 0.0}
    weights.write_text(json.dumps(span))
    older = verifier_from(weights, catalogue)
    assert isinstance(older, SimilarityVerifier) and older.considered == 10
    weights.write_text(json.dumps(span | {"considered": 3}))
    chosen = verifier_from(weights, catalogue)
    assert isinstance(chosen, SimilarityVerifier) and chosen.considered == 3
    many = [cand(f"M10.{i}", "Gout", 0.9 - i / 100) for i in range(6)]
    scored = chosen.score_span(note_of(("Gout", many, {})).items[0], {})
    assert [c.code for _, c, _ in scored] == ["M10.0", "M10.1", "M10.2"]
    weights.write_text(json.dumps(span | {"considered": 0}))
    with pytest.raises(ValueError, match="considered"):
        verifier_from(weights, catalogue)


NOTE = "Hypertension. High blood pressure again today. Denies angina. Gout."


def note_of(*spans: tuple[str, list[Candidate], dict[str, bool]]) -> RetrievedNote:
    items = [
        SpanCandidates(span=make_span(text, NOTE, f"s{i}", **flags), candidates=cands)
        for i, (text, cands, flags) in enumerate(spans)
    ]
    return RetrievedNote(note_id="n1", text=NOTE, catalogue_version="test", items=items)


def reranker(**weights: float) -> LogisticNoteModel:
    """Note weights with every feature 0 but those given."""
    return LogisticNoteModel(
        weights.pop("bias", 0.0), tuple(weights.pop(name, 0.0) for name in NOTE_FEATURES)
    )


HYPERTENSION = cand("I10", "Essential (primary) hypertension", 0.80)
GOUT = cand("M10.9", "Gout, unspecified", 0.95)
ANGINA = cand("I20.9", "Angina pectoris, unspecified", 0.99)


def test_note_reranker_ranks_a_code_several_spans_state_above_a_single_better_match() -> None:
    note = note_of(
        ("Hypertension", [HYPERTENSION], {}),
        ("High blood pressure again today", [HYPERTENSION], {}),
        ("Gout", [GOUT], {}),
    )
    by_spans = SimilarityVerifier(note_model=reranker(bias=-2.0, spans=3.0))
    by_best = SimilarityVerifier(note_model=reranker(bias=-2.0, best=1.0))
    first = {v.confidence: v.code for v in by_spans.verify_sync(note).verdicts}
    assert first[max(first)] == "I10"
    first = {v.confidence: v.code for v in by_best.verify_sync(note).verdicts}
    assert first[max(first)] == "M10.9"
    # one confidence per code, carried by each span that suggested it: both spans are evidence
    i10 = [v for v in by_spans.verify_sync(note).verdicts if v.code == "I10"]
    assert [v.span_id for v in i10] == ["s0", "s1"] and len({v.confidence for v in i10}) == 1
    assert "2 spans of the note retrieved it" in i10[0].justification


def test_note_reranker_skips_codes_only_a_negated_span_names() -> None:
    note = note_of(("Denies angina", [ANGINA], {"negated": True}), ("Gout", [GOUT], {}))
    out = SimilarityVerifier(note_model=reranker(bias=5.0)).verify_sync(note)
    assert {v.code for v in out.verdicts} == {"M10.9"}


def test_negated_mentions_for_review_get_rows_of_their_own() -> None:
    """ICDCODER_NEGATED_MENTIONS=review: a code only negated spans name is scored from them
    alone; a code a stated span names keeps the row it has without the setting."""
    gout_again = cand("M10.9", "Gout, unspecified", 0.99)
    gout_knee = cand("M10.061", "Idiopathic gout, right knee", 0.9)
    note = note_of(
        ("Denies angina", [ANGINA, gout_again, gout_knee], {"negated": True}),
        ("Gout", [GOUT], {}),
    )

    def features(verifier: SimilarityVerifier) -> dict[str, tuple[float, ...]]:
        return {code: row.features() for code, row in verifier.note_rows(note, {}).items()}

    guideline = features(SimilarityVerifier())
    mentions = features(SimilarityVerifier(negated_for_review=True))
    assert set(guideline) == {"M10.9"}
    assert set(mentions) == {"M10.9", "I20.9", "M10.061"}
    assert mentions["M10.9"] == guideline["M10.9"]  # its negated span adds nothing
    # M10.061's only sibling among the negated-only rows is none: M10.9 is stated
    assert dict(zip(NOTE_FEATURES, mentions["M10.061"], strict=True))["siblings"] == 0
    out = SimilarityVerifier(note_model=reranker(bias=5.0), negated_for_review=True)
    assert {v.code for v in out.verify_sync(note).verdicts} == {"M10.9", "I20.9", "M10.061"}


def test_note_reranker_cuts_the_note_to_its_best_codes_and_thresholds_decide() -> None:
    note = note_of(
        ("Hypertension", [HYPERTENSION], {}),
        ("High blood pressure again today", [HYPERTENSION], {}),
        ("Gout", [GOUT], {}),
    )
    weights = reranker(bias=-1.0, spans=2.0)  # I10: sigmoid(-1 + 2 log 3) = 0.77; M10.9 0.60
    one = SimilarityVerifier(note_model=weights, max_codes_per_note=1).verify_sync(note)
    assert {v.code for v in one.verdicts} == {"I10"}
    two = SimilarityVerifier(
        note_model=weights, accept_threshold=0.7, review_threshold=0.5
    ).verify_sync(note)
    decisions = {v.code: v.decision for v in two.verdicts}
    assert decisions == {"I10": "accept", "M10.9": "review"}


def test_note_weights_come_from_the_weights_file_and_can_be_switched_off(
    tmp_path: Path, catalogue: Catalogue
) -> None:
    span_weights = {"bias": -6.0, "score": 1.0, "coverage": 1.0, "margin": 0.0}
    weights = tmp_path / "w.json"
    weights.write_text(json.dumps(span_weights))
    plain = verifier_from(weights, catalogue)
    assert isinstance(plain, SimilarityVerifier) and plain.note_model is None
    # the re-ranker's confidence has its own operating point, in its own section
    point = {"operating_point": {"accept_threshold": 0.3, "max_codes_per_note": 25}}
    note = {"bias": -3.0} | {name: 0.5 for name in NOTE_FEATURES} | point
    span_point = {"operating_point": {"accept_threshold": 0.15}}
    weights.write_text(json.dumps(span_weights | {"note": note} | span_point))
    chosen = verifier_from(weights, catalogue)
    assert isinstance(chosen, SimilarityVerifier) and chosen.note_model is not None
    assert chosen.note_model.bias == -3.0 and chosen.max_codes_per_note == 25
    assert chosen.accept_threshold == 0.3
    off = verifier_from(weights, catalogue, note_reranker=False)
    assert isinstance(off, SimilarityVerifier) and off.note_model is None
    assert off.accept_threshold == 0.15
    weights.write_text(json.dumps(span_weights | {"note": {"bias": 1.0}}))
    with pytest.raises(ValueError, match="note weights lack best"):
        verifier_from(weights, catalogue)


class FixedVotes:
    def __init__(self, votes: dict[str, float]) -> None:
        self.seen: list[str] = []
        self._votes = votes

    def votes(self, text: str) -> dict[str, float]:
        self.seen.append(text)
        return self._votes


def test_similar_notes_vote_through_the_reranker(tmp_path: Path, catalogue: Catalogue) -> None:
    note = note_of(
        ("Hypertension", [HYPERTENSION], {}),
        ("High blood pressure again today", [HYPERTENSION], {}),
        ("Gout", [GOUT], {}),
    )
    votes = FixedVotes({"M10.9": 1.0})
    weights = reranker(spans=1.0, similar_notes=3.0)
    out = SimilarityVerifier(note_model=weights, similar_notes=votes).verify_sync(note)
    first = max(out.verdicts, key=lambda v: v.confidence)
    assert first.code == "M10.9" and votes.seen == [NOTE]
    assert "similar coded notes vote 1.00" in first.justification
    alone = SimilarityVerifier(note_model=weights).verify_sync(note)
    assert max(alone.verdicts, key=lambda v: v.confidence).code == "I10"
    # a memory with coded notes gives the verifier its vote
    memory = tmp_path / "memory.jsonl"
    memory.write_text(json.dumps({"codes": ["E11.9"], "text": "Type 2 diabetes.", "source": "x"}))
    note_section = {"bias": 0.0} | {name: 0.0 for name in NOTE_FEATURES}
    weights_path = tmp_path / "w.json"
    weights_path.write_text(
        json.dumps(
            {"bias": -6.0, "score": 1.0, "coverage": 1.0, "margin": 0.0} | {"note": note_section}
        )
    )
    chosen = verifier_from(weights_path, catalogue, memory=memory)
    assert isinstance(chosen, SimilarityVerifier) and chosen.similar_notes is not None
    assert chosen.similar_notes.votes("Type 2 diabetes mellitus.") == {"E11.9": 1.0}
    off = verifier_from(weights_path, catalogue, memory=memory, similar_notes=0)
    assert isinstance(off, SimilarityVerifier) and off.similar_notes is None


def test_the_note_classifier_feeds_the_reranker(tmp_path: Path, catalogue: Catalogue) -> None:
    note = note_of(("Hypertension", [HYPERTENSION], {}), ("Gout", [GOUT], {}))
    weights = reranker(classified=1.0, classifier=1.0)
    votes = FixedVotes({"M10.9": 2.5})
    out = SimilarityVerifier(note_model=weights, note_classifier=votes).verify_sync(note)
    first = max(out.verdicts, key=lambda v: v.confidence)
    assert first.code == "M10.9" and first.confidence == pytest.approx(0.9707, abs=1e-4)
    assert "classifier of coded notes gives it log-odds +2.5" in first.justification
    # I10 has no model: both classifier features are 0, so sigmoid(0)
    assert {v.code: v.confidence for v in out.verdicts}["I10"] == 0.5
    # a memory with coded notes gives the verifier a classifier, unless it is turned off
    memory = tmp_path / "memory.jsonl"
    memory.write_text(
        "\n".join(
            json.dumps({"codes": [code], "text": text})
            for code, text in [
                ("E11.9", "Type 2 diabetes mellitus."),
                ("E11.9", "Diabetes type 2 on metformin."),
                ("I10", "Hypertension on enalapril."),
            ]
        )
    )
    note_section = {"bias": 0.0} | {name: 0.0 for name in NOTE_FEATURES}
    weights_path = tmp_path / "w.json"
    weights_path.write_text(
        json.dumps(
            {"bias": -6.0, "score": 1.0, "coverage": 1.0, "margin": 0.0, "note": note_section}
        )
    )
    chosen = verifier_from(weights_path, catalogue, memory=memory)
    assert isinstance(chosen, SimilarityVerifier) and chosen.note_classifier is not None
    assert chosen.note_classifier.votes("Type 2 diabetes.")["E11.9"] > 0
    off = verifier_from(weights_path, catalogue, memory=memory, note_classifier=False)
    assert isinstance(off, SimilarityVerifier) and off.note_classifier is None


def test_a_code_is_not_documented_by_words_the_note_rules_out() -> None:
    angina = cand("I20.9", "Angina pectoris, unspecified", 0.5)
    verifier = SimilarityVerifier()

    def angina_row(**flags: bool) -> dict[str, float]:
        # "Denies angina": the angina code reaches the note through the gout span only
        note = note_of(("angina", [], flags), ("Gout", [GOUT, angina], {}))
        row = verifier.note_rows(note, {})["I20.9"]
        return dict(zip(NOTE_FEATURES, row.features(), strict=True))

    stated, negated = angina_row(), angina_row(negated=True)
    assert stated["note_coverage"] == 0.5 and stated["documented"] == 0.5  # not "pectoris"
    assert negated["note_coverage"] == 0.0 and negated["documented"] == 0.0
    assert angina_row(hypothetical=True)["note_coverage"] == 0.0
    assert angina_row(family=True)["note_coverage"] == 0.5


def test_stated_text_leaves_out_ruled_out_spans_only() -> None:
    text = "No fever or cough. Mother had asthma. Rule out sepsis. Gout."
    spans = [
        make_span("fever", text, "s0", negated=True),
        make_span("cough", text, "s1", negated=True),
        make_span("asthma", text, "s2", family=True),
        make_span("sepsis", text, "s3", hypothetical=True),
        make_span("Gout", text, "s4"),
    ]
    stated = stated_text(text, reversed(spans))
    assert "fever" not in stated and "cough" not in stated and "sepsis" not in stated
    assert "asthma" in stated and "Gout" in stated and "No" in stated
    assert stated_text(text, []) == text


def test_each_sibling_stands_against_the_best_of_the_others() -> None:
    idiopathic = cand("M10.00", "Idiopathic gout, unspecified site", 0.6)
    lead = cand("M10.10", "Lead-induced gout, unspecified site", 0.4)
    note = note_of(("Gout", [GOUT, idiopathic, lead], {}))
    rows = SimilarityVerifier().note_rows(note, {})
    best = {code: row.best() for code, row in rows.items()}
    gaps = {code: row.sibling_gap for code, row in rows.items()}
    for code, gap in gaps.items():
        others = max(b for other, b in best.items() if other != code)
        assert gap == pytest.approx(best[code] - others)
    assert all(row.siblings == 2 for row in rows.values())


def test_note_rows_compare_codes_of_one_category_and_count_coded_notes() -> None:
    idiopathic = cand("M10.00", "Idiopathic gout, unspecified site", 0.6)
    note = note_of(("Gout", [GOUT, idiopathic], {}), ("Hypertension", [HYPERTENSION], {}))
    verifier = SimilarityVerifier(coded_notes={"M10.9": 3.0})
    rows = verifier.note_rows(note, {})
    named = {
        code: dict(zip(NOTE_FEATURES, row.features(), strict=True)) for code, row in rows.items()
    }
    gout, other, i10 = named["M10.9"], named["M10.00"], named["I10"]
    # M10.9 and M10.00 compete for one condition: each sees the other, with opposite gaps
    assert gout["siblings"] == other["siblings"] == pytest.approx(math.log(2))
    assert gout["sibling_gap"] > 0 and other["sibling_gap"] == pytest.approx(-gout["sibling_gap"])
    assert gout["sibling_gap"] == pytest.approx(gout["best"] - other["best"])
    assert i10["siblings"] == 0 and i10["sibling_gap"] == NO_SIBLING
    assert (gout["code_length"], other["code_length"], i10["code_length"]) == (4, 5, 3)
    assert gout["coded_notes"] == pytest.approx(math.log(4)) and other["coded_notes"] == 0
    # The note says "Gout" only: M10.9 asks for "gout" (stated), M10.00 for "idiopathic",
    # "gout", "site" (one of three); each gap is against the other sibling, 0 without one.
    assert gout["documented"] == 1.0 and other["documented"] == pytest.approx(1 / 3)
    assert gout["documented_gap"] == pytest.approx(2 / 3) == -other["documented_gap"]
    assert gout["coverage_gap"] == pytest.approx(-other["coverage_gap"])
    assert i10["documented_gap"] == i10["coverage_gap"] == 0.0
    # "Essential (primary) hypertension" asks for "essential" and "hypertension".
    assert i10["documented"] == 0.5


def test_the_review_threshold_comes_from_the_operating_point_unless_set(
    tmp_path: Path, catalogue: Catalogue
) -> None:
    span_weights = {"bias": -6.0, "score": 1.0, "coverage": 1.0, "margin": 0.0}
    point = {"operating_point": {"accept_threshold": 0.3, "review_threshold": 0.005}}
    note = {"bias": -3.0} | {name: 0.5 for name in NOTE_FEATURES} | point
    weights = tmp_path / "w.json"
    weights.write_text(json.dumps(span_weights | {"note": note}))
    chosen = verifier_from(weights, catalogue)
    assert isinstance(chosen, SimilarityVerifier) and chosen.review_threshold == 0.005
    overridden = verifier_from(weights, catalogue, review_threshold=0.1)
    assert isinstance(overridden, SimilarityVerifier) and overridden.review_threshold == 0.1
    weights.write_text(json.dumps(span_weights))
    plain = verifier_from(weights, catalogue)
    assert isinstance(plain, SimilarityVerifier) and plain.review_threshold == 0.02


def test_note_rows_say_how_the_best_span_matched_the_code() -> None:
    # "Hiatal hernia in medical treatment": K44.9's Index path names it, its title does not
    hiatal = cand(
        "K44.9",
        "Diaphragmatic hernia without obstruction or gangrene",
        0.77,
        matched="Hernia, hernial, hiatal",
    )
    congenital = cand("Q40.1", "Congenital hiatus hernia", 0.73)
    text = "Hiatal hernia in medical treatment"
    items = [SpanCandidates(span=make_span(text, text), candidates=[hiatal, congenital])]
    note = RetrievedNote(note_id="n1", text=text, catalogue_version="test", items=items)
    rows = SimilarityVerifier().note_rows(note, {})
    named = {
        code: dict(zip(NOTE_FEATURES, row.features(), strict=True)) for code, row in rows.items()
    }
    k44, q40 = named["K44.9"], named["Q40.1"]
    # the title asks for "diaphragmatic" and "hernia", the path for "hernia" and "hiatal"
    assert k44["documented"] == 0.5 and k44["path_documented"] == 1.0
    assert q40["path_documented"] == q40["documented"] == pytest.approx(1 / 3)
    # of "hiatal hernia medical treatment", the path holds two words, Q40.1's title one
    assert k44["explained"] == 0.5 and q40["explained"] == 0.25
    assert (k44["best_rank"], q40["best_rank"]) == (0, 1)
    assert k44["span_words"] == q40["span_words"] == 5
    assert (k44["title_match"], q40["title_match"]) == (0.0, 1.0)
    # the category's place in the classification: K44 and Q40
    assert (k44["category"], q40["category"]) == (10 * 121 + 4 * 11 + 4, 16 * 121 + 4 * 11)


def test_a_block_of_categories_is_one_range_of_places() -> None:
    # a letter comes after the digits: C4A (Merkel cell) after C49, QA0 after Q99
    ordered = [
        "A00.0",
        "B99.9",
        "C43.9",
        "C49.9",
        "C4A.9",
        "C50.9",
        "E11.9",
        "E11.22",
        "Q99.9",
        "QA0.0",
    ]
    places = [category_place(code) for code in ordered]
    assert places == sorted(places) and len(set(places)) == len(places) - 1
    # codes of one category share its place, whatever their subdivision or case
    assert category_place("E11.9") == category_place("e11.22") == category_place("E11") == 496.0
