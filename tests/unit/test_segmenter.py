"""Segmenter core: sections, sentences, clause spans with exact offsets, ConText flags."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from icdcoder.services.segmenter.context_rules import EMPTY_HISTORY, as_phrases, context_rules
from icdcoder.services.segmenter.core import Segmenter
from icdcoder.shared.messages import NoteIn, SegmentedNote
from icdcoder.shared.notes import EmptyNoteError, NoteTooLargeError
from icdcoder.shared.settings import SegmenterConfig

CODIESP_DEV_EN = (
    Path(__file__).resolve().parents[2].parent / "shared/data/codiesp/dev/text_files_en"
)
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

DISCHARGE = """DISCHARGE SUMMARY

Admission Date: 03/14/2026        Discharge Date: 03/18/2026

History of Present Illness:
The patient is a 70-year-old man with type 2 diabetes mellitus who presented with three days
of worsening dyspnea on exertion and bilateral lower extremity edema. He denies chest pain.
No fever or cough. Rule out pneumonia.

Past Medical History:
1. Type 2 diabetes mellitus without complications
2. Hypertension; hyperlipidemia; CKD stage 3
3. History of nephrolithiasis.

Family History:
Family history of breast cancer. Father had coronary artery disease.

Hospital Course:
He was treated with intravenous furosemide. Pneumonia was ruled out.

Discharge Diagnoses:
1. Acute on chronic systolic (congestive) heart failure
2. Type 2 diabetes mellitus without complications
3. Hyperlipidemia, unspecified

Discharge Medications:
Metformin 500 mg twice daily.
"""

BULLETS = (
    "ASSESSMENT AND PLAN:\r\n"
    "- Community-acquired pneumonia, right lower lobe\r\n"
    "* Atrial fibrillation with rapid ventricular response\r\n"
    "\u2022 Possible pulmonary embolism\r\n"
    "\r\n"
    "Impression: acute kidney injury due to dehydration.\r\n"
)

CASE_REPORT = (
    "A 29-year-old woman with a history of duodenal ulcer and constipation consulted for "
    "pain in the right renal fossa.\n"
    "No history of nephrolithiasis, hematuria or urinary tract infections.\n"
    "1.\n"
    "Family history: mother with type 2 diabetes.\n"
    "Ultrasound showed right hydronephrosis, and a retrograde pyelography showed stenosis of "
    "the right pyeloureteral junction.\n"
)

NOTES = [DISCHARGE, BULLETS, CASE_REPORT]


@pytest.fixture(scope="module")
def segmenter() -> Segmenter:
    return Segmenter(SegmenterConfig(max_note_chars=5_000))


def segment(segmenter: Segmenter, text: str) -> SegmentedNote:
    return segmenter.segment(NoteIn(note_id="t1", text=text))


def by_text(note: SegmentedNote) -> dict[str, list[str]]:
    return {s.text: list(s.context.active()) for s in note.spans}


def assert_well_formed(text: str, note: SegmentedNote) -> None:
    """The invariants every segmented note keeps, whatever its text."""
    assert note.text == text
    assert [s.span_id for s in note.spans] == [f"s{i:04d}" for i in range(len(note.spans))]
    previous_end = 0
    for span in note.spans:
        assert text[span.start : span.end] == span.text
        assert span.sentence_start <= span.start < span.end <= span.sentence_end
        assert span.start >= previous_end, "spans are in text order and never overlap"
        previous_end = span.end
        assert span.text == span.text.strip()
        assert any(c.isalpha() for c in span.text)
        sentence = text[span.sentence_start : span.sentence_end]
        assert sentence == sentence.strip()


@pytest.mark.parametrize("text", NOTES, ids=["discharge", "bullets-crlf", "case-report"])
def test_offsets_slice_the_text_exactly(segmenter: Segmenter, text: str) -> None:
    note = segment(segmenter, text)
    assert len(note.spans) >= 5
    assert_well_formed(text, note)


def test_sections_are_assigned_and_headers_are_not_spans(segmenter: Segmenter) -> None:
    note = segment(segmenter, DISCHARGE)
    sections = {s.text: s.section for s in note.spans}
    assert sections["bilateral lower extremity edema"] == "history_of_present_illness"
    assert sections["breast cancer"] == "family_history"
    assert sections["coronary artery disease"] == "family_history"
    assert sections["Acute on chronic systolic (congestive) heart failure"] == (
        "discharge_diagnoses"
    )
    assert sections["Hyperlipidemia, unspecified"] == "discharge_diagnoses"
    texts = " | ".join(sections)
    for header in ("SUMMARY", "History of Present", "Medical History", "Discharge Diagnoses"):
        assert header not in texts
    assert "Metformin" not in texts  # medication lists are not coded
    assert "03/14/2026" not in texts  # nor administrative lines
    # the two list items "Type 2 diabetes ..." are separate spans in their own sections
    diabetes = [s for s in note.spans if s.text.startswith("Type 2 diabetes mellitus without")]
    assert [s.section for s in diabetes] == ["past_medical_history", "discharge_diagnoses"]


def test_bullets_and_inline_headers(segmenter: Segmenter) -> None:
    note = segment(segmenter, BULLETS)
    spans = {s.text: (s.section, list(s.context.active())) for s in note.spans}
    assert spans["Community-acquired pneumonia"] == ("assessment_plan", [])
    assert spans["Atrial fibrillation with rapid ventricular response"] == ("assessment_plan", [])
    assert spans["pulmonary embolism"] == ("assessment_plan", ["hypothetical"])
    assert spans["acute kidney injury due to dehydration"] == ("assessment_plan", [])
    assert not any(s.text[0] in "-*\u2022" for s in note.spans)


def test_an_inline_header_covers_its_own_line_only(segmenter: Segmenter) -> None:
    note = segment(segmenter, CASE_REPORT)
    spans = {s.text: s for s in note.spans}
    diabetes = spans["type 2 diabetes"]
    assert diabetes.section == "family_history" and diabetes.context.family
    hydronephrosis = spans["right hydronephrosis"]
    assert hydronephrosis.section == "" and not hydronephrosis.context.family


def test_case_report_spans_and_flags(segmenter: Segmenter) -> None:
    spans = by_text(segment(segmenter, CASE_REPORT))
    assert spans["duodenal ulcer"] == ["historical"]
    assert spans["constipation"] == ["historical"]
    assert spans["pain in the right renal fossa"] == []  # "consulted for" ends the history
    assert spans["nephrolithiasis"] == ["negated", "historical"]
    assert spans["hematuria"] == ["negated", "historical"]
    assert spans["urinary tract infections"] == ["negated", "historical"]


def test_list_items_and_clauses(segmenter: Segmenter) -> None:
    note = segment(segmenter, "Hypertension; hyperlipidemia; CKD stage 3")
    assert [s.text for s in note.spans] == ["Hypertension", "hyperlipidemia", "CKD stage 3"]
    assert all(s.sentence_start == 0 and s.sentence_end == 41 for s in note.spans)


@pytest.mark.parametrize(
    ("text", "spans"),
    [
        ("He has COPD and was treated for pneumonia.", ["COPD", "pneumonia"]),
        ("Diabetes mellitus and hypertension.", ["Diabetes mellitus", "hypertension"]),
        ("Fever, cough and dyspnea.", ["Fever", "cough", "dyspnea"]),
        (
            "Type 2 diabetes with diabetic nephropathy.",
            ["Type 2 diabetes with diabetic nephropathy"],
        ),
        ("Breast and ovarian cancer.", ["Breast and ovarian cancer"]),
        ("Acute and chronic pancreatitis.", ["Acute and chronic pancreatitis"]),
        ("Hyperlipidemia, unspecified.", ["Hyperlipidemia, unspecified"]),
        ("Chronic kidney disease, stage 3.", ["Chronic kidney disease, stage 3"]),
        ("Acute kidney injury due to dehydration.", ["Acute kidney injury due to dehydration"]),
        ("CT showed a mass compatible with a lipoma.", ["CT", "mass", "lipoma"]),
        ("A 5-year-old child with fever and otitis.", ["fever", "otitis"]),
        # a split inside brackets leaves no unbalanced bracket at a span's edge
        ("Renal failure (creatinine 3.1, urea 90).", ["Renal failure (creatinine 3.1", "urea 90"]),
    ],
)
def test_clause_splitting(segmenter: Segmenter, text: str, spans: list[str]) -> None:
    assert [s.text for s in segment(segmenter, text).spans] == spans


@pytest.mark.parametrize(
    ("text", "span", "flags"),
    [
        ("Patient denies chest pain.", "chest pain", ["negated"]),
        ("No fever or cough.", "cough", ["negated"]),
        ("Chest X-ray was negative for pneumonia.", "pneumonia", ["negated"]),
        ("Pneumonia was ruled out.", "Pneumonia", ["negated"]),
        ("Tuberculosis was discarded.", "Tuberculosis", ["negated"]),
        ("Family history of breast cancer.", "breast cancer", ["family", "historical"]),
        ("Mother had coronary artery disease.", "coronary artery disease", ["family"]),
        ("Her son has asthma.", "asthma", ["family"]),
        ("The child had a febrile seizure.", "child had a febrile seizure", []),
        ("Rule out pneumonia.", "pneumonia", ["hypothetical"]),
        ("Suspected pulmonary embolism.", "pulmonary embolism", ["hypothetical"]),
        (
            "Possible community-acquired pneumonia.",
            "community-acquired pneumonia",
            ["hypothetical"],
        ),
        ("Return if chest pain recurs.", "chest pain recurs", ["hypothetical"]),
        ("History of nephrolithiasis.", "nephrolithiasis", ["historical"]),
        ("No history of nephrolithiasis.", "nephrolithiasis", ["negated", "historical"]),
        ("Status post appendectomy.", "appendectomy", ["historical"]),
        ("S/p coronary artery bypass graft.", "coronary artery bypass graft", ["historical"]),
        ("Previous myocardial infarction.", "myocardial infarction", ["historical"]),
        ("An ex-smoker of 20 cigarettes a day.", "smoker of 20 cigarettes a day", ["historical"]),
        # "ex-" reaches one word: the hypertension is current
        ("Ex-smoker, hypertensive.", "hypertensive", []),
        # a word that states an absence by itself; a finding beside it stands
        ("He was afebrile.", "afebrile", ["negated"]),
        ("The lesion: non-tender.", "non-tender", ["negated"]),
        ("Painless jaundice.", "Painless jaundice", []),
        ("Non-painful hepatomegaly.", "Non-painful hepatomegaly", []),
        ("Abdominal pain prior to admission.", "Abdominal pain prior to admission", []),
        (
            "Type 2 diabetes mellitus without complications",
            "Type 2 diabetes mellitus without complications",
            [],
        ),
        ("Cough with no fever.", "fever", ["negated"]),
        ("Cough with no fever.", "Cough", []),
        ("No symptoms except lumbar pain.", "symptoms", ["negated"]),
        ("No symptoms except lumbar pain.", "lumbar pain", []),
        (
            "Hypertension secondary to renal artery stenosis.",
            "Hypertension secondary to renal artery stenosis",
            [],
        ),
    ],
)
def test_context_flags(segmenter: Segmenter, text: str, span: str, flags: list[str]) -> None:
    spans = by_text(segment(segmenter, text))
    assert span in spans, spans
    assert spans[span] == flags


def test_without_is_part_of_a_condition_and_negates_nothing_else(segmenter: Segmenter) -> None:
    text = "Diagnoses: type 2 diabetes mellitus without complications, hypertension, asthma."
    spans = {s.text: list(s.context.active()) for s in segment(segmenter, text).spans}
    assert spans == {
        "type 2 diabetes mellitus without complications": [],
        "hypertension": [],
        "asthma": [],
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "A 92-year-old woman, without known drug allergies, with a history of asthma.",
            {"known drug allergies": ["negated"], "asthma": ["historical"]},
        ),
        ("27-year-old patient without allergies.", {"allergies": ["negated"]}),
        ("The postoperative period evolved without complications.", {"complications": ["negated"]}),
        ("Vomiting without fever or dysthermic sensation.", {"fever": ["negated"]}),
        (
            "Fracture of the femur without displacement.",
            {"Fracture of the femur without displacement": []},
        ),
    ],
)
def test_without_negates_after_a_person_a_verb_or_a_comma(
    segmenter: Segmenter, text: str, expected: dict[str, list[str]]
) -> None:
    spans = by_text(segment(segmenter, text))
    for span, flags in expected.items():
        assert spans.get(span) == flags, spans


def test_context_stays_in_its_sentence(segmenter: Segmenter) -> None:
    spans = by_text(segment(segmenter, "He denies chest pain. Pneumonia is confirmed.\nAsthma."))
    assert spans["chest pain"] == ["negated"]
    assert spans["Pneumonia is confirmed"] == []
    assert spans["Asthma"] == []


def test_section_defaults(segmenter: Segmenter) -> None:
    text = "Family History:\nDiabetes.\n\nDifferential Diagnosis:\nLymphoma.\n\nPMH:\nAsthma.\n"
    spans = {s.text: (s.section, list(s.context.active())) for s in segment(segmenter, text).spans}
    assert spans["Diabetes"] == ("family_history", ["family"])
    assert spans["Lymphoma"] == ("differential_diagnosis", ["hypothetical"])
    # a past-medical-history entry is a chronic condition to code, not historical by itself
    assert spans["Asthma"] == ("past_medical_history", [])


def test_a_colon_line_that_names_a_condition_is_not_a_header(segmenter: Segmenter) -> None:
    note = segment(segmenter, "HIV seropositive:\n- Kaposi sarcoma\nCOPD\n")
    assert [(s.text, s.section) for s in note.spans] == [
        ("HIV seropositive", ""),
        ("Kaposi sarcoma", ""),
        ("COPD", ""),
    ]


def test_spans_that_only_tell_when_are_dropped(segmenter: Segmenter) -> None:
    text = (
        "Subsequently, one month later, on admission, she had fever, respectively.\nAfter two days."
    )
    assert [s.text for s in segment(segmenter, text).spans] == ["fever"]


def test_spans_of_narrative_words_are_dropped(segmenter: Segmenter) -> None:
    text = "Despite treatment, she had ataxia. It could, as described, be found."
    assert [s.text for s in segment(segmenter, text).spans] == ["ataxia"]


def test_segment_is_pure(segmenter: Segmenter) -> None:
    first = segment(segmenter, DISCHARGE)
    segment(segmenter, CASE_REPORT)
    again = segment(segmenter, DISCHARGE)
    assert [s.model_dump() for s in first.spans] == [s.model_dump() for s in again.spans]


def test_bad_notes(segmenter: Segmenter) -> None:
    with pytest.raises(EmptyNoteError):
        segment(segmenter, " \n\t ")
    with pytest.raises(NoteTooLargeError):
        segment(segmenter, "fever " * 1_000)
    assert segment(segmenter, "x" * 4_990 + " fever").spans  # at the limit is fine
    assert isinstance(EmptyNoteError(), ValueError) and isinstance(NoteTooLargeError(), ValueError)


def test_a_note_with_no_condition_words_has_no_spans(segmenter: Segmenter) -> None:
    note = segment(segmenter, "1.\n2.\n- 12/03/2024\n")
    assert note.spans == []


def test_context_rules_spell_out() -> None:
    rules = context_rules()
    phrases = as_phrases(rules)
    # only patterns with more than optional literal tokens stay token patterns
    assert [rule.literal for rule in phrases if rule.pattern is not None] == [
        "previous days",
        *EMPTY_HISTORY,
    ]
    literals = {rule.literal for rule in phrases}
    assert {"status post", "s/p", "rule out", "denies", "no history of", "his son"} <= literals
    assert "child" not in literals  # the patient in pediatric reports, not a relative


FRAGMENTS = [
    "fever",
    "chest pain",
    "Type 2 diabetes mellitus",
    "denies",
    "no",
    "history of",
    "s/p",
    "rule out",
    "mother",
    "with",
    "without",
    "and",
    "or",
    ",",
    ";",
    ":",
    ".",
    ". ",
    "\n",
    "\r\n",
    "\n\n",
    "1. ",
    "- ",
    "* ",
    "\u2022 ",
    "(",
    ")",
    "[",
    "]",
    "Past Medical History:\n",
    "FAMILY HISTORY\n",
    "Diagnoses: ",
    "  ",
    "\t",
    "e\u0301",
    "\u00e9",
    "caf\u00e9",
    "\u2028",
    "\x1c",
    "\x85",
    "\x0b",
    "\u00a0",
    "50%",
    "3",
    "was ruled out",
    "possible",
    "CKD stage 3",
    "'",
    '"',
    "-",
    "x",
    "A",
    "a",
]


def test_random_texts_keep_the_invariants(segmenter: Segmenter) -> None:
    rng = random.Random(20261123)
    for _ in range(300):
        text = "".join(rng.choice(FRAGMENTS) + rng.choice(["", " "]) for _ in range(40))
        if not text.strip():
            continue
        assert_well_formed(text, segment(segmenter, text))


def test_examples_offsets(segmenter: Segmenter) -> None:
    paths = sorted(EXAMPLES.glob("*.txt"))
    if not paths:
        pytest.skip(f"no example notes in {EXAMPLES}")
    big = Segmenter()
    for path in paths:
        text = path.read_text(encoding="utf-8")
        note = big.segment(NoteIn(note_id="x", text=text))
        assert note.spans, path.name
        assert_well_formed(text, note)


def test_codiesp_dev_notes() -> None:
    if not CODIESP_DEV_EN.is_dir():
        pytest.skip(f"CodiEsp dev notes not found: {CODIESP_DEV_EN}")
    paths = sorted(CODIESP_DEV_EN.glob("*.txt"))
    assert len(paths) == 250
    texts = [path.read_text(encoding="utf-8") for path in paths]
    big = Segmenter()
    notes = [big.segment(NoteIn(note_id=f"n{i}", text=t)) for i, t in enumerate(texts)]
    for path, text, note in zip(paths, texts, notes, strict=True):
        assert note.spans, path.name
        assert_well_formed(text, note)
    flagged = sum(bool(s.context.active()) for note in notes for s in note.spans)
    total = sum(len(note.spans) for note in notes)
    assert 0.05 < flagged / total < 0.5  # context is found, and most spans carry none


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # a history said to hold nothing negates nothing after it, and is no span itself
        (
            "A 33-year-old man with no history of interest was diagnosed with Crohn's disease.",
            {"Crohn's disease": []},
        ),
        (
            "A 42-year-old man with no relevant medical history, who underwent vasectomy.",
            {"vasectomy": []},
        ),
        (
            "A man with no significant past medical history who began with epistaxis.",
            {"epistaxis": []},
        ),
        ("No personal or family history of interest. Asthma.", {"Asthma": []}),
        ("No family history. Asthma.", {"Asthma": []}),
        # a history that names a condition still negates it
        ("No relevant history of diabetes.", {"diabetes": ["negated", "historical"]}),
        ("No personal history of hypertension.", {"hypertension": ["negated", "historical"]}),
        ("He had no history of diabetes.", {"diabetes": ["negated", "historical"]}),
        # "no toxic habits" says it all: no span is left to code
        (
            "A male with no toxic habits, with a history of urticaria.",
            {"urticaria": ["historical"]},
        ),
    ],
)
def test_an_empty_history_negates_nothing(
    segmenter: Segmenter, text: str, expected: dict[str, list[str]]
) -> None:
    spans = by_text(segment(segmenter, text))
    for span, flags in expected.items():
        assert spans.get(span) == flags, spans
    assert not any("history" in span.lower() or "toxic" in span.lower() for span in spans), spans


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # backward cues reach the words just before them, not the sentence's start
        (
            "Gliclazide to control type 2 diabetes mellitus, atorvastatin as prophylaxis.",
            {"Gliclazide to control type 2 diabetes mellitus": []},
        ),
        ("DVT prophylaxis.", {"DVT": ["negated"]}),
        ("Pneumonia unlikely.", {"Pneumonia": ["negated"]}),
        # "disease free" says it all: the carcinoma stands, and no span keeps the cue
        (
            "After nephrectomy for renal carcinoma she remains disease free.",
            {"After nephrectomy for renal carcinoma she remains": []},
        ),
        ("Tumor-free margins.", {"margins": []}),
    ],
)
def test_backward_cues_reach_a_few_words(
    segmenter: Segmenter, text: str, expected: dict[str, list[str]]
) -> None:
    spans = by_text(segment(segmenter, text))
    for span, flags in expected.items():
        assert spans.get(span) == flags, spans
    assert not any("free" in span for span in spans), spans


def test_a_free_wall_is_anatomy(segmenter: Segmenter) -> None:
    text = "Rupture of a transmural infarction in the left ventricular free wall."
    spans = by_text(segment(segmenter, text))
    assert list(spans.values()) == [[]], spans
