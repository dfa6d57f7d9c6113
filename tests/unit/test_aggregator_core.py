from typing import Literal

from icdcoder.services.aggregator.core import Aggregator
from icdcoder.shared.catalogue import Catalogue
from icdcoder.shared.context import context_reason, review_reason
from icdcoder.shared.messages import (
    Candidate,
    Span,
    SpanCandidates,
    Verdict,
    VerifiedNote,
    VerifierInfo,
)
from icdcoder.shared.settings import AggregatorConfig
from tests.fakes import make_span

NOTE = (
    "Type 2 diabetes mellitus without complications. Diabetes. Denies chest pain. "
    "Family history of breast cancer. History of nephrolithiasis. Rule out pneumonia. "
    "Type 1 diabetes. Skull fracture."
)


def span(text: str, sid: str, **flags: bool) -> Span:
    return make_span(text, NOTE, sid, **flags)


def verdict(sid: str, code: str, conf: float, decision: str = "accept") -> Verdict:
    return Verdict(
        span_id=sid, code=code, decision=decision, confidence=conf, justification=f"j {code}"
    )  # type: ignore[arg-type]


def run(
    catalogue: Catalogue,
    spans: list[Span],
    verdicts: list[Verdict],
    include_review: bool = True,
    combine: Literal["max", "noisy_or"] = "max",
    text: str = NOTE,
    negated_for_review: bool = False,
    **rules: bool | str,
):  # type: ignore[no-untyped-def]
    note = VerifiedNote(
        note_id="n1",
        text=text,
        catalogue_version="icd10cm-2026",
        items=[SpanCandidates(span=s, candidates=candidates(s, verdicts)) for s in spans],
        verdicts=verdicts,
        verifier=VerifierInfo(backend="test"),
    )
    config = AggregatorConfig(include_review=include_review, combine=combine, **rules)
    return Aggregator(catalogue, config, negated_for_review=negated_for_review).aggregate(note)


def candidates(span: Span, verdicts: list[Verdict]) -> list[Candidate]:
    """The span's candidates: the codes its verdicts name (a verifier chooses among them)."""
    codes = dict.fromkeys(v.code for v in verdicts if v.span_id == span.span_id)
    return [Candidate(code=c, description=c, score=0.5, matched=c) for c in codes]


def test_context_reasons() -> None:
    assert context_reason(span("Denies chest pain", "a", negated=True), "R07.9") == "negated"
    fam = span("Family history of breast cancer", "b", family=True)
    assert context_reason(fam, "Z80.3") is None
    assert context_reason(fam, "C50.919") is not None
    hist = span("History of nephrolithiasis", "c", historical=True)
    assert context_reason(hist, "Z87.442") is None and review_reason(hist, "Z87.442") is None
    # a past condition may still be current: its own code is the coder's call, for review
    assert context_reason(hist, "N20.0") is None
    assert review_reason(hist, "N20.0") is not None
    # what a procedure left is a status code: it stands on a historical span
    after = make_span("Status post nephrectomy", "Status post nephrectomy", "k", historical=True)
    assert review_reason(after, "Z90.5") is None and review_reason(after, "Z99.2") is None
    assert review_reason(after, "N28.9") is not None
    assert review_reason(fam, "C50.919") is None  # a relative's: refused, not for review
    # uncertain: an inpatient's discharge diagnosis is coded as if established (Guidelines
    # II.H), an outpatient's is not: the coder's call, for review
    maybe = span("Rule out pneumonia", "d", hypothetical=True)
    assert context_reason(maybe, "J18.9") is None
    assert review_reason(maybe, "J18.9") == "hypothetical or uncertain"


def test_a_history_of_a_lifelong_condition_is_the_condition() -> None:
    """ "A history of hypertension": the patient has it (it does not resolve)."""

    def alone(text: str, sid: str, **flags: bool) -> Span:
        return make_span(text, text, sid, **flags)

    hypertension = alone("history of hypertension", "e", historical=True)
    assert context_reason(hypertension, "I10") is None
    assert context_reason(hypertension, "Z86.79") is None  # a history code still may
    assert context_reason(alone("history of dyslipidemia", "f", historical=True), "E78.5") is None
    stroke = alone("history of stroke", "g", historical=True)
    assert review_reason(stroke, "I63.9") is not None  # an event in the past: Z86.73
    assert review_reason(hypertension, "I10") is None
    denied = alone("No hypertension", "h", negated=True, historical=True)
    assert context_reason(denied, "I10") == "negated"
    relative = alone("Mother with hypertension", "i", family=True, historical=True)
    assert context_reason(relative, "I10") is not None


def test_context_drops_condition_codes_but_keeps_history_codes(catalogue: Catalogue) -> None:
    """A past or uncertain condition's code is for review (without review codes, excluded)."""
    spans = [
        span("Denies chest pain", "s1", negated=True),
        span("Family history of breast cancer", "s2", family=True),
        span("History of nephrolithiasis", "s3", historical=True),
        span("Rule out pneumonia", "s4", hypothetical=True),
    ]
    out = run(
        catalogue,
        spans,
        [
            verdict("s1", "R07.9", 0.9),
            verdict("s2", "C50.919", 0.9),
            verdict("s2", "Z80.3", 0.8),
            verdict("s3", "N20.0", 0.9),
            verdict("s3", "Z87.442", 0.8),
            verdict("s4", "J18.9", 0.9),
        ],
    )
    assert [(c.code, c.decision) for c in out.codes] == [
        ("J18.9", "review"),
        ("N20.0", "review"),
        ("Z80.3", "accept"),
        ("Z87.442", "accept"),
    ]
    assert "For review: hypothetical or uncertain" in out.codes[0].justification
    assert "For review: historical" in out.codes[1].justification
    reasons = {(x.code, x.reason.split(":")[0]) for x in out.excluded}
    assert reasons == {("R07.9", "negated"), ("C50.919", "family history")}
    ex = next(x for x in out.excluded if x.code == "R07.9")
    assert NOTE[ex.start : ex.end] == ex.text == "Denies chest pain"
    accepted_only = run(
        catalogue,
        spans,
        [verdict("s3", "N20.0", 0.9), verdict("s4", "J18.9", 0.9)],
        include_review=False,
    )
    assert not accepted_only.codes
    assert [(x.code, x.reason.split(":")[0]) for x in accepted_only.excluded] == [
        ("N20.0", "historical"),
        ("J18.9", "hypothetical or uncertain"),
    ]


def test_negated_mentions_go_to_review_only_when_asked(catalogue: Catalogue) -> None:
    """The guidelines code no finding the note rules out; ICDCODER_NEGATED_MENTIONS=review
    lists it for a coder (CodiEsp's gold codes such mentions), never accepted."""
    spans = [span("Denies chest pain", "s1", negated=True), span("Diabetes", "s2")]
    verdicts = [verdict("s1", "R07.9", 0.9), verdict("s2", "E11.9", 0.8)]
    guideline = run(catalogue, spans, verdicts)
    assert [c.code for c in guideline.codes] == ["E11.9"]
    assert [(x.code, x.reason) for x in guideline.excluded] == [("R07.9", "negated")]
    denied = make_span("Denies chest pain", NOTE, "s1", negated=True)
    assert context_reason(denied, "R07.9", negated_for_review=True) is None
    assert review_reason(denied, "R07.9") == "negated: the note rules it out"
    mentions = run(catalogue, spans, verdicts, negated_for_review=True)
    assert [(c.code, c.decision) for c in mentions.codes] == [
        ("R07.9", "review"),
        ("E11.9", "accept"),
    ]
    assert "For review: negated" in mentions.codes[0].justification
    without_review = run(catalogue, spans, verdicts, include_review=False, negated_for_review=True)
    assert [c.code for c in without_review.codes] == ["E11.9"]
    assert [x.code for x in without_review.excluded] == ["R07.9"]


def test_a_past_condition_also_stated_as_current_is_accepted(catalogue: Catalogue) -> None:
    text = "History of nephrolithiasis. Now nephrolithiasis again."
    spans = [
        make_span("History of nephrolithiasis", text, "s1", historical=True),
        make_span("nephrolithiasis again", text, "s2"),
    ]
    verdicts = [verdict("s1", "N20.0", 0.9), verdict("s2", "N20.0", 0.7)]
    out = run(catalogue, spans, verdicts, text=text)
    assert [(c.code, c.decision) for c in out.codes] == [("N20.0", "accept")]
    assert [e.span_id for e in out.codes[0].evidence] == ["s1", "s2"]


def test_most_specific_code_keeps_all_evidence(catalogue: Catalogue) -> None:
    spans = [span("Type 2 diabetes mellitus without complications", "s1"), span("Diabetes", "s2")]
    out = run(catalogue, spans, [verdict("s1", "E11.9", 0.7), verdict("s2", "E11", 0.9)])
    assert [c.code for c in out.codes] == ["E11.9"]
    assert [e.span_id for e in out.codes[0].evidence] == ["s1", "s2"]
    assert out.codes[0].confidence == 0.9


def test_excludes1_keeps_the_more_confident_and_sends_the_other_to_review(
    catalogue: Catalogue,
) -> None:
    spans = [
        span("Type 2 diabetes mellitus without complications", "s1"),
        span("Type 1 diabetes", "s2"),
    ]
    verdicts = [verdict("s1", "E11.9", 0.9), verdict("s2", "E10.9", 0.6)]
    out = run(catalogue, spans, verdicts)
    assert [(c.code, c.decision) for c in out.codes] == [("E11.9", "accept"), ("E10.9", "review")]
    assert "Excludes1 with E11.9" in out.codes[1].justification and not out.excluded
    assert out.codes[1].confidence == 0.6  # a rival's conflict: its own evidence still stands
    # a code only suggested for review conflicts with nothing
    out = run(catalogue, spans, [verdict("s1", "E11.9", 0.9, "review"), verdicts[1]])
    assert [(c.code, c.decision) for c in out.codes] == [("E11.9", "review"), ("E10.9", "accept")]
    # without review codes the conflicting one is excluded, with the reason
    out = run(catalogue, spans, verdicts, include_review=False)
    assert [c.code for c in out.codes] == ["E11.9"]
    assert [(x.code, x.reason) for x in out.excluded] == [
        ("E10.9", "Excludes1 with E11.9, which is more confident")
    ]


def test_dedupe_rank_review_and_seventh_character(catalogue: Catalogue) -> None:
    spans = [
        span("Diabetes", "s1"),
        span("Type 2 diabetes mellitus without complications", "s2"),
        span("Skull fracture", "s3"),
    ]
    verdicts = [
        verdict("s1", "E11.9", 0.55, "review"),
        verdict("s2", "E11.9", 0.8),
        verdict("s3", "S02.0", 0.95),
        verdict("s3", "NOTACODE", 0.99),
        verdict("s1", "I10", 0.99, "reject"),
    ]
    out = run(catalogue, spans, verdicts)
    assert [c.code for c in out.codes] == ["S02.0XXA", "E11.9"]
    e11 = out.codes[1]
    assert e11.decision == "accept" and len(e11.evidence) == 2
    assert "7th character A" in out.codes[0].justification
    assert any(x.reason == "not in catalogue" for x in out.excluded)
    without_review = run(catalogue, spans[:1], verdicts[:1], include_review=False)
    assert without_review.codes == []


def test_noisy_or_ranks_a_code_stated_twice_above_a_single_stronger_one(
    catalogue: Catalogue,
) -> None:
    spans = [
        span("Type 2 diabetes mellitus without complications", "s1"),
        span("Diabetes", "s2"),
        span("Skull fracture", "s3"),
    ]
    verdicts = [
        verdict("s1", "E11.9", 0.6),
        verdict("s2", "E11.9", 0.5),
        verdict("s3", "S02.91", 0.7),
    ]
    best = run(catalogue, spans, verdicts)
    assert [(c.code, c.confidence) for c in best.codes] == [("S02.91XA", 0.7), ("E11.9", 0.6)]
    combined = run(catalogue, spans, verdicts, combine="noisy_or")
    assert [(c.code, c.confidence) for c in combined.codes] == [("E11.9", 0.8), ("S02.91XA", 0.7)]
    assert len(combined.codes[0].evidence) == 2


def test_a_code_asking_for_more_than_is_documented_gives_way_to_one_stated_in_full(
    catalogue: Catalogue,
) -> None:
    text = "Type 2 diabetes mellitus. Type 2 diabetes mellitus with hyperglycemia."
    plain = make_span("Type 2 diabetes mellitus", text, "s1")
    verdicts = [verdict("s1", "E11.65", 0.6), verdict("s1", "E11.9", 0.1, "review")]
    out = run(catalogue, [plain], verdicts, text=text)
    assert [(c.code, c.decision, c.confidence) for c in out.codes] == [
        ("E11.9", "accept", 0.6),
        ("E11.65", "review", 0.1),
    ]
    assert "in place of E11.65" in out.codes[0].justification
    assert "'hyperglycemia' is not documented" in out.codes[1].justification
    off = run(catalogue, [plain], verdicts, text=text, documented_specificity=False)
    assert [(c.code, c.decision) for c in off.codes] == [("E11.65", "accept"), ("E11.9", "review")]
    # documented in its sentence: E11.65 stands
    second = text[26:]
    stated = make_span("Type 2 diabetes mellitus", second, "s2").model_copy(
        update={"sentence_end": len(second)}
    )
    verdicts = [verdict("s2", "E11.65", 0.6), verdict("s2", "E11.9", 0.1, "review")]
    out = run(catalogue, [stated], verdicts, text=second)
    assert (out.codes[0].code, out.codes[0].decision) == ("E11.65", "accept")


def test_a_second_code_of_one_category_on_the_same_evidence_goes_to_review(
    catalogue: Catalogue,
) -> None:
    spans = [span("Type 2 diabetes mellitus without complications", "s1"), span("Diabetes", "s2")]
    verdicts = [
        verdict("s1", "E11.9", 0.9),
        verdict("s1", "E11.8", 0.7),
        verdict("s1", "E11.65", 0.6),
        verdict("s2", "E11.65", 0.6),
    ]
    out = run(catalogue, spans, verdicts)
    assert [(c.code, c.decision) for c in out.codes] == [
        ("E11.9", "accept"),
        ("E11.8", "review"),  # same category, same span
        ("E11.65", "accept"),  # same category, but with evidence of its own
    ]
    assert "E11.9, of the same category, is more confident on the same evidence" in (
        out.codes[1].justification
    )
    out = run(catalogue, spans, verdicts, include_review=False)
    assert [c.code for c in out.codes] == ["E11.9", "E11.65"]
    assert [(x.code, x.span_id) for x in out.excluded] == [("E11.8", "s1")]
    assert "same category" in out.excluded[0].reason
    off = run(catalogue, spans, verdicts, one_code_per_category=False)
    assert [c.decision for c in off.codes] == ["accept"] * 3


def test_a_code_that_does_not_fit_the_patient_goes_to_review(catalogue: Catalogue) -> None:
    text = "An 84-year-old woman; she has a urinary tract infection."
    uti = make_span("urinary tract infection", text, "s1")
    verdicts = [verdict("s1", "O86.20", 0.8), verdict("s1", "N39.0", 0.7)]
    out = run(catalogue, [uti], verdicts, text=text)
    # its evidence cannot support it: it keeps 0.3 of its confidence and ranks below N39.0
    assert [(c.code, c.decision, c.confidence) for c in out.codes] == [
        ("N39.0", "accept", 0.7),
        ("O86.20", "review", 0.24),
    ]
    assert "the note mentions no pregnancy" in out.codes[1].justification
    kept = run(catalogue, [uti], verdicts, text=text, unsupported_weight=1.0)
    assert [(c.code, c.confidence) for c in kept.codes] == [("O86.20", 0.8), ("N39.0", 0.7)]
    out = run(catalogue, [uti], verdicts, text=text, patient_checks=False)
    assert [c.decision for c in out.codes] == ["accept", "accept"]


def test_a_code_whose_title_the_note_states_is_settled_before_its_siblings(
    catalogue: Catalogue,
) -> None:
    text = (
        "He has type 2 diabetes mellitus. Diagnoses: Type 2 diabetes mellitus without complications"
    )
    general = make_span("type 2 diabetes mellitus", text, "s1")
    stated = make_span("Type 2 diabetes mellitus without complications", text, "s2")
    verdicts = [
        verdict("s1", "E11.8", 0.56),
        verdict("s2", "E11.8", 0.56),
        verdict("s2", "E11.9", 0.2),
    ]
    out = run(catalogue, [general, stated], verdicts, text=text)
    # E11.8's extra evidence only names the category, which E11.9 codes more specifically;
    # E11.9, settled first, ranks above the code it displaced
    assert [(c.code, c.decision, c.confidence) for c in out.codes] == [
        ("E11.9", "accept", 0.56),
        ("E11.8", "review", 0.2),
    ]
    assert "E11.9, of the same category" in out.codes[1].justification
    off = run(catalogue, [general, stated], verdicts, text=text, stated_title=False)
    assert {c.code: c.decision for c in off.codes} == {"E11.8": "accept", "E11.9": "review"}


def test_an_injury_code_needs_trauma_in_its_evidence(catalogue: Catalogue) -> None:
    text = "Acute kidney injury. Bilateral lower extremity edema. She fell: skull fracture."
    aki = make_span("Acute kidney injury", text, "s1")
    edema = make_span("Bilateral lower extremity edema", text, "s2")
    fracture = make_span("skull fracture", text, "s3")
    verdicts = [
        verdict("s1", "S37.009", 0.6),
        verdict("s1", "N17.9", 0.5),
        verdict("s2", "S89.90", 0.4),
        verdict("s3", "S02.91", 0.3),
    ]
    out = run(catalogue, [aki, edema, fracture], verdicts, text=text)
    decisions = {c.code[:6]: c.decision for c in out.codes}
    assert decisions == {
        "S37.00": "review",
        "N17.9": "accept",
        "S89.90": "review",
        "S02.91": "accept",
    }
    s37 = next(c for c in out.codes if c.code.startswith("S37.00"))
    assert "names no injury, external cause" in s37.justification
    assert s37.confidence == 0.18 and out.codes[0].code == "N17.9"
    off = run(catalogue, [aki, edema, fracture], verdicts, text=text, injury_needs_trauma=False)
    assert {c.decision for c in off.codes} == {"accept"}


def test_a_symptom_beside_the_diagnosis_that_explains_it_goes_to_review(
    catalogue: Catalogue,
) -> None:
    text = "Dyspnea and leg edema. Acute on chronic systolic heart failure. Type 2 diabetes."
    dyspnea = make_span("Dyspnea", text, "s1")
    edema = make_span("leg edema", text, "s2")
    failure = make_span("Acute on chronic systolic heart failure", text, "s3")
    diabetes = make_span("Type 2 diabetes", text, "s4")
    verdicts = [
        verdict("s1", "R06.00", 0.9),
        verdict("s2", "R60.0", 0.8),
        verdict("s3", "I50.23", 0.5),
        verdict("s4", "E11.9", 0.5),
    ]
    spans = [dyspnea, edema, failure, diabetes]
    out = run(catalogue, spans, verdicts, text=text)
    decisions = {c.code: c.decision for c in out.codes}
    # dyspnoea is a circulatory/respiratory symptom; oedema (general) has no system
    assert decisions == {
        "R06.00": "review",
        "R60.0": "accept",
        "I50.23": "accept",
        "E11.9": "accept",
    }
    assert "beside I50.23" in out.codes[0].justification
    assert "I.B.5" in out.codes[0].justification
    # the order of the codes does not matter: the diagnosis is less confident than the symptom
    out = run(catalogue, spans, verdicts, text=text, include_review=False)
    assert "R06.00" not in {c.code for c in out.codes}
    assert [x.code for x in out.excluded] == ["R06.00"]
    assert {
        c.decision for c in run(catalogue, spans, verdicts, text=text, symptoms="off").codes
    } == {"accept"}


def test_a_symptom_in_the_sentence_of_a_diagnosis(catalogue: Catalogue) -> None:
    text = "Fever due to pneumonia. Later, a fever again."
    fever = make_span("Fever", text, "s1")
    pneumonia = make_span("pneumonia", text, "s2")
    # the spans' sentence is the first one: make_span's sentence is the span itself
    fever = fever.model_copy(update={"sentence_start": 0, "sentence_end": 22})
    pneumonia = pneumonia.model_copy(update={"sentence_start": 0, "sentence_end": 22})
    verdicts = [verdict("s1", "R50.9", 0.8), verdict("s2", "J18.9", 0.6)]
    out = run(catalogue, [fever, pneumonia], verdicts, text=text, symptoms="sentence")
    assert {c.code: c.decision for c in out.codes} == {"R50.9": "review", "J18.9": "accept"}
    assert "in the sentence that states J18.9" in out.codes[0].justification
    out = run(catalogue, [fever, pneumonia], verdicts, text=text, symptoms="system")
    assert {c.decision for c in out.codes} == {"accept"}


def test_a_combination_code_is_proposed_for_review(catalogue: Catalogue) -> None:
    text = "Essential hypertension. Systolic heart failure."
    htn = make_span("Essential hypertension", text, "s1")
    failure = make_span("Systolic heart failure", text, "s2")
    verdicts = [verdict("s1", "I10", 0.7), verdict("s2", "I50.20", 0.4)]
    out = run(catalogue, [htn, failure], verdicts, text=text)
    assert [(c.code, c.decision, c.confidence) for c in out.codes] == [
        ("I10", "accept", 0.7),
        ("I11.0", "review", 0.4),
        ("I50.20", "accept", 0.4),
    ]
    combo = out.codes[1]
    assert [e.span_id for e in combo.evidence] == ["s1", "s2"]
    assert "Combination of I10 + I50.20" in combo.justification
    off = run(catalogue, [htn, failure], verdicts, text=text, combination_codes=False)
    assert [c.code for c in off.codes] == ["I10", "I50.20"]
    # a part only suggested for review proposes nothing
    only_review = [verdict("s1", "I10", 0.7), verdict("s2", "I50.20", 0.4, "review")]
    assert "I11.0" not in {
        c.code for c in run(catalogue, [htn, failure], only_review, text=text).codes
    }


def test_a_diagnosis_on_a_test_name_alone_goes_to_review(catalogue: Catalogue) -> None:
    text = "Chest X-ray. Chest X-ray showed a pneumonia."
    xray = make_span("Chest X-ray", text, "s1")
    result = Span(
        span_id="s2",
        start=13,
        end=44,
        text=text[13:44],
        sentence_start=13,
        sentence_end=44,
    )
    verdicts = [
        verdict("s1", "R07.9", 0.6),
        verdict("s1", "Z01.89", 0.5),
        verdict("s2", "J18.9", 0.4),
    ]
    out = run(catalogue, [xray, result], verdicts, text=text)
    assert {c.code: c.decision for c in out.codes} == {
        "R07.9": "review",  # "chest pain" on "Chest X-ray"
        "Z01.89": "review",  # an X-ray in the course of care is no visit for one
        "J18.9": "accept",  # a finding written with the test
    }
    r07 = next(c for c in out.codes if c.code == "R07.9")
    assert "only names a test or procedure" in r07.justification
    assert [c.code for c in out.codes] == ["J18.9", "R07.9", "Z01.89"]  # 0.4, 0.18, 0.15
    z01 = next(c for c in out.codes if c.code == "Z01.89")
    assert "not a visit made for one" in z01.justification
    off = run(catalogue, [xray, result], verdicts, text=text, procedure_names=False, symptoms="off")
    assert {c.decision for c in off.codes} == {"accept"}


def test_a_blood_type_or_skin_anaesthesia_needs_more_than_a_procedure(
    catalogue: Catalogue,
) -> None:
    text = (
        "Blood count. Blood group A Rh positive. The biopsy was performed under local "
        "anesthesia. Anesthesia of the left hand. Blood tests showed a normal count."
    )
    count = make_span("Blood count", text, "s1")
    group = make_span("Blood group A Rh positive", text, "s2")
    given = make_span("The biopsy was performed under local anesthesia", text, "s3")
    numb = make_span("Anesthesia of the left hand", text, "s4")
    normal = make_span("Blood tests showed a normal count", text, "s5")
    verdicts = [
        verdict("s1", "Z67.10", 0.6),
        verdict("s2", "Z67.10", 0.6),
        verdict("s3", "R20.0", 0.6),
        verdict("s4", "R20.0", 0.6),
        verdict("s5", "Z67.10", 0.6),
    ]

    def decision(where: Span, said: Verdict) -> str:
        return run(catalogue, [where], [said], text=text).codes[0].decision

    spans = [count, group, given, numb, normal]
    assert [decision(s, v) for s, v in zip(spans, verdicts, strict=True)] == [
        "review",  # a blood count gives no blood type
        "accept",
        "review",  # anaesthesia given for a procedure, not numb skin
        "accept",
        "review",  # a test's result, but no blood group
    ]
    why = run(catalogue, [normal], [verdicts[4]], text=text).codes[0].justification
    assert "states no blood group" in why


def test_a_code_on_an_age_alone_goes_to_review(catalogue: Catalogue) -> None:
    text = "He was 30 years old. A frail 90-year-old woman."
    only_age = make_span("30 years old", text, "s1")
    age = run(catalogue, [only_age], [verdict("s1", "R54", 0.6)], text=text)
    assert [(c.code, c.decision) for c in age.codes] == [("R54", "review")]
    assert "only says who the patient is" in age.codes[0].justification
    frail = make_span("A frail 90-year-old woman", text, "s2")
    said = run(catalogue, [frail], [verdict("s2", "R54", 0.6)], text=text)
    assert [(c.code, c.decision) for c in said.codes] == [("R54", "accept")]


def test_illness_unspecified_needs_evidence_that_someone_is_ill(catalogue: Catalogue) -> None:
    text = "We decided to wait. He had a rare disease."
    patient = make_span("We decided", text, "s1")
    disease = make_span("a rare disease", text, "s2")
    vague = run(catalogue, [patient], [verdict("s1", "R69", 0.6)], text=text)
    assert [(c.code, c.decision) for c in vague.codes] == [("R69", "review")]
    assert "says no one is ill" in vague.codes[0].justification
    ill = run(catalogue, [disease], [verdict("s2", "R69", 0.6)], text=text)
    assert [(c.code, c.decision) for c in ill.codes] == [("R69", "accept")]
    off = run(catalogue, [patient], [verdict("s1", "R69", 0.6)], text=text, ill_defined=False)
    assert [(c.code, c.decision) for c in off.codes] == [("R69", "accept")]


def test_an_encounter_for_examination_needs_a_visit_named(catalogue: Catalogue) -> None:
    text = "Physical examination was normal. She came for a routine check-up."
    exam = make_span("Physical examination", text, "s1")
    visit = make_span("routine check-up", text, "s2")
    found = run(catalogue, [exam], [verdict("s1", "Z00.00", 0.6)], text=text)
    assert [(c.code, c.decision) for c in found.codes] == [("Z00.00", "review")]
    stated = run(catalogue, [visit], [verdict("s2", "Z00.00", 0.6)], text=text)
    assert [(c.code, c.decision) for c in stated.codes] == [("Z00.00", "accept")]


def test_an_unspecified_disorder_of_an_organ_needs_something_wrong(catalogue: Catalogue) -> None:
    text = "Her liver. Lytic bone lesions."
    liver = make_span("Her liver", text, "s1")
    bone = make_span("Lytic bone lesions", text, "s2")
    verdicts = [verdict("s1", "K76.9", 0.6), verdict("s2", "M89.9", 0.5)]
    out = run(catalogue, [liver, bone], verdicts, text=text)
    assert [(c.code, c.decision, c.confidence) for c in out.codes] == [
        ("M89.9", "accept", 0.5),
        ("K76.9", "review", 0.18),  # it ranks below the codes the note supports
    ]
    assert "says nothing is wrong with it" in out.codes[1].justification
    off = run(catalogue, [liver, bone], verdicts, text=text, generic_disorders=False)
    assert {c.decision for c in off.codes} == {"accept"}


def test_uncertain_behavior_needs_a_histology(catalogue: Catalogue) -> None:
    text = "A tumor in the left testicle. Leydig cell tumor of the right testis."
    tumor = make_span("A tumor in the left testicle", text, "s1")
    leydig = make_span("Leydig cell tumor of the right testis", text, "s2")
    out = run(catalogue, [tumor], [verdict("s1", "D40.10", 0.6)], text=text)
    assert [(c.code, c.decision) for c in out.codes] == [("D40.10", "review")]
    assert "no histology" in out.codes[0].justification
    out = run(catalogue, [leydig], [verdict("s2", "D40.10", 0.6)], text=text)
    assert [(c.code, c.decision) for c in out.codes] == [("D40.10", "accept")]
    off = run(
        catalogue, [tumor], [verdict("s1", "D40.10", 0.6)], text=text, uncertain_behavior=False
    )
    assert [c.decision for c in off.codes] == ["accept"]


def test_nodes_at_a_named_site_are_localized(catalogue: Catalogue) -> None:
    text = "Inguinal lymphadenopathy."
    nodes = make_span("Inguinal lymphadenopathy", text, "s1")
    out = run(catalogue, [nodes], [verdict("s1", "R59.1", 0.6)], text=text)
    assert [(c.code, c.decision, c.confidence) for c in out.codes] == [("R59.0", "accept", 0.6)]
    assert "names the site: localized (R59.0), not R59.1" in out.codes[0].justification
    assert out.codes[0].evidence[0].text == "Inguinal lymphadenopathy"
    off = run(catalogue, [nodes], [verdict("s1", "R59.1", 0.6)], text=text, localized_nodes=False)
    assert [c.code for c in off.codes] == ["R59.1"]


def test_a_malformation_named_by_its_organ_needs_one_said(catalogue: Catalogue) -> None:
    text = "Preserved urothelium without dysplasia. Congenital anomaly of the ear."
    tissue = make_span("Preserved urothelium without dysplasia", text, "s1")
    anomaly = make_span("Congenital anomaly of the ear", text, "s2")
    verdicts = [verdict("s1", "Q89.9", 0.6), verdict("s2", "Q17.9", 0.5)]
    out = run(catalogue, [tissue, anomaly], verdicts, text=text)
    assert [(c.code, c.decision) for c in out.codes] == [("Q17.9", "accept"), ("Q89.9", "review")]
    assert "says nothing is malformed from birth" in out.codes[1].justification


def test_a_category_is_not_reported(catalogue: Catalogue) -> None:
    text = "Monocular exotropia of the right eye."
    squint = make_span("Monocular exotropia", text, "s1")
    category = run(catalogue, [squint], [verdict("s1", "H50.11", 0.6)], text=text)
    assert [(c.code, c.decision, c.confidence) for c in category.codes] == [
        ("H50.11", "review", 0.6)
    ]
    assert "not reported" in category.codes[0].justification
    leaf = run(catalogue, [squint], [verdict("s1", "H50.111", 0.6)], text=text)
    assert [(c.code, c.decision) for c in leaf.codes] == [("H50.111", "accept")]
    # a code whose children are 7th characters is reported with the default one instead
    skull = run(catalogue, [span("Skull fracture", "s2")], [verdict("s2", "S02.0", 0.6)])
    assert [(c.code, c.decision) for c in skull.codes] == [("S02.0XXA", "accept")]
