"""The segmenter's modules one at a time: sections, sentences, spans, and the bench variants."""

from __future__ import annotations

import subprocess
import sys
from itertools import pairwise

import pytest

from icdcoder.services.segmenter.sections import (
    SKIPPED_SECTIONS,
    line_header,
    normalise_section,
    with_section,
)
from icdcoder.services.segmenter.sentences import Sentence, split_sentences
from icdcoder.services.segmenter.spans import cut_cues, split_clauses, trim
from icdcoder.shared.messages import ContextFlags


def header_of(line: str) -> tuple[str, str, bool] | None:
    """line_header on a one-line text, with the content start shown as the text after it."""
    found = line_header(line, 0, len(line))
    return None if found is None else (found[0], line[found[1] :], found[2])


@pytest.mark.parametrize(
    ("line", "header"),
    [
        ("Past Medical History:", ("past_medical_history", "", False)),
        ("  PMH:  ", ("past_medical_history", "", False)),
        ("DISCHARGE DIAGNOSES", ("discharge_diagnoses", "", False)),
        ("Family history: mother with asthma", ("family_history", "mother with asthma", True)),
        ("Neurological examination:", ("neurological_examination", "", False)),
        ("DISCHARGE SUMMARY", ("discharge_summary", "", False)),
        ("HIV seropositive:", None),
        ("COPD", None),
        ("Pain: severe, in the left knee", None),  # an unknown title with content is no header
    ],
)
def test_line_header(line: str, header: tuple[str, str, bool] | None) -> None:
    assert header_of(line) == header


def test_section_names_and_defaults() -> None:
    assert normalise_section("Assessment and Plan") == "assessment_plan"
    assert normalise_section("Operative  Findings") == "operative_findings"
    assert {"medications", "administrative", "instructions"} == SKIPPED_SECTIONS
    assert with_section(ContextFlags(), "family_history") == ContextFlags(family=True)
    assert with_section(ContextFlags(), "differential_diagnosis") == ContextFlags(hypothetical=True)
    assert with_section(ContextFlags(negated=True), "") == ContextFlags(negated=True)


def sentences(text: str) -> list[tuple[str, str]]:
    return [(text[s.start : s.end], s.section) for s in split_sentences(text)]


def test_sentences_headers_bullets_and_wrapped_lines() -> None:
    text = (
        "HPI:\nA man with fever\nand cough. He denies pain.\n\n"
        "Family history: mother with asthma. Father well.\n"
        "PMH:\n- Hypertension\n2) Diabetes\nKaposi sarcoma\nCOPD\n"
    )
    assert sentences(text) == [
        ("A man with fever\nand cough.", "history_of_present_illness"),
        ("He denies pain.", "history_of_present_illness"),
        ("mother with asthma.", "family_history"),
        ("Father well.", "family_history"),  # an inline header covers its whole line
        ("Hypertension", "past_medical_history"),
        ("Diabetes", "past_medical_history"),
        ("Kaposi sarcoma", "past_medical_history"),
        ("COPD", "past_medical_history"),
    ]


def test_sentences_take_a_header_rule() -> None:
    text = "PMH:\nAsthma."
    assert list(split_sentences(text, header=lambda *_: None)) == [
        Sentence(0, 4, ""),
        Sentence(5, 12, ""),
    ]
    assert list(split_sentences("1.\n- \n12/03\n")) == []  # no word, no sentence


def clauses(text: str) -> list[str]:
    return [text[s:e] for s, e in split_clauses(text, 0, len(text))]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hypertension; CKD: stage 3", ["Hypertension", "CKD: stage 3"]),
        ("Hyperlipidemia, unspecified", ["Hyperlipidemia, unspecified"]),
        ("Type 2 diabetes, with hyperglycemia", ["Type 2 diabetes, with hyperglycemia"]),
        ("hematuria or urinary tract infection", ["hematuria", "urinary tract infection"]),
        ("breast and ovarian cancer", ["breast and ovarian cancer"]),
        ("The patient was admitted with fever", ["fever"]),
    ],
)
def test_clauses(text: str, expected: list[str]) -> None:
    assert clauses(text) == expected


def test_trim() -> None:
    text = "- (chronic renal failure. "
    start, end = trim(text, 0, len(text)) or (0, 0)
    assert text[start:end] == "chronic renal failure"  # an unbalanced bracket goes
    assert trim("(CKD)", 0, 5) == (0, 5)  # a balanced one stays
    assert trim("the patient was", 0, 15) is None
    assert trim("12/03 - 5", 0, 9) is None


def test_cut_cues() -> None:
    text = "He denies chest pain and no fever"
    cues = [(3, 9), (25, 27)]  # "denies", "no"
    assert [text[s:e] for s, e in cut_cues(text, 0, 20, cues)] == ["chest pain"]
    assert [text[s:e] for s, e in cut_cues(text, 25, 33, cues)] == ["fever"]
    assert list(cut_cues(text, 10, 20, [])) == [(10, 20)]


VARIANT_NOTE = (
    "History of present illness: A 60-year-old man with fever. He denies chest pain.\n"
    "Family History:\nMother with diabetes.\n\n"
    "Discharge Medications:\nMetformin 500 mg.\n"
)


def test_variant_splitters_keep_the_sentence_contract() -> None:
    pytest.importorskip("PyRuSH")
    from icdcoder.services.segmenter.variants import medspacy_sections, pyrush_sentences

    for split in (pyrush_sentences(), medspacy_sections()):
        found = list(split(VARIANT_NOTE))
        assert found, split
        assert all(s.start < s.end for s in found)
        assert all(a.end <= b.start for a, b in pairwise(found))
        for s in found:
            piece = VARIANT_NOTE[s.start : s.end]
            assert piece == piece.strip()
            assert "History:" not in piece and "Medications:" not in piece  # titles left out
        by_text = {VARIANT_NOTE[s.start : s.end]: s.section for s in found}
        assert by_text["Mother with diabetes."] == "family_history"
        assert by_text["Metformin 500 mg."] == "medications"


def test_context_loads_without_medspacys_other_components_or_torch() -> None:
    """ConText alone: no PyRuSH, QuickUMLS, NLTK, SciPy or torch; a later import is the real one."""
    script = """
import sys
from icdcoder.services.segmenter.context import ConText
from icdcoder.services.segmenter.sentences import split_sentences
text = "She denies chest pain. Her mother had breast cancer."
context = ConText()
cues = context.cues(text, split_sentences(text))
flags = context.flags(cues, [(11, 21), (38, 51)])
heavy = ["torch", "scipy", "nltk", "quickumls", "PyRuSH", "medspacy"]
print([name for name in heavy if name in sys.modules])
print([(f.negated, f.family) for f in flags])
import medspacy
print(callable(medspacy.load))
"""
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    assert run.stdout.splitlines() == ["[]", "[(True, False), (False, True)]", "True"]
