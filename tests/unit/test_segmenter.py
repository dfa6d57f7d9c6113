from pathlib import Path

import pytest

from services.segmenter.core import EmptyNoteError, NoteTooLargeError, Segmenter
from shared.messages import NoteIn, SegmentedNote
from shared.settings import SegmenterSettings
from tests.conftest import CODIESP, EXAMPLES

SUMMARY = """DISCHARGE SUMMARY

History of Present Illness:
The patient is a 70-year-old man who presented with dyspnea. He denies chest pain.
Rule out pneumonia.

Past Medical History:
1. Type 2 diabetes mellitus without complications
2. Hypertension; hyperlipidemia; CKD stage 3
3. History of nephrolithiasis.

Family History:
Family history of breast cancer.

Discharge Medications:
Metformin 500 mg twice daily.
"""


DIABETES = "Type 2 diabetes mellitus without complications"


@pytest.fixture(scope="module")
def segmenter() -> Segmenter:
    return Segmenter(SegmenterSettings(max_note_chars=5_000))


def segment(segmenter: Segmenter, text: str) -> SegmentedNote:
    return segmenter.segment(NoteIn(note_id="t1", text=text))


def by_text(note: SegmentedNote) -> dict[str, list[str]]:
    return {s.text: s.context.active() for s in note.spans}


def test_offsets_slice_the_text_exactly(segmenter: Segmenter) -> None:
    note = segment(segmenter, SUMMARY)
    assert note.spans
    for span in note.spans:
        assert SUMMARY[span.start : span.end] == span.text
        assert SUMMARY[span.sentence_start : span.sentence_end].find(span.text) >= 0
    assert [s.span_id for s in note.spans] == [f"s{i:04d}" for i in range(len(note.spans))]


def test_sections_and_headers(segmenter: Segmenter) -> None:
    note = segment(segmenter, SUMMARY)
    sections = {s.text: s.section for s in note.spans}
    assert sections["Type 2 diabetes mellitus without complications"] == "past_medical_history"
    assert sections["breast cancer"] == "family_history"
    assert not any("History" in s.text and s.text.endswith(":") for s in note.spans)
    assert not any("Metformin" in s.text for s in note.spans)  # medication lists are not coded


def test_list_items_and_clauses(segmenter: Segmenter) -> None:
    spans = by_text(segment(segmenter, SUMMARY))
    assert {"Hypertension", "hyperlipidemia", "CKD stage 3"} <= spans.keys()
    assert spans["Type 2 diabetes mellitus without complications"] == []  # "without" is no negation


@pytest.mark.parametrize(
    ("text", "span", "flags"),
    [
        ("Patient denies chest pain.", "chest pain", ["negated"]),
        ("Family history of breast cancer.", "breast cancer", ["family", "historical"]),
        ("Rule out pneumonia.", "pneumonia", ["hypothetical"]),
        ("History of nephrolithiasis.", "nephrolithiasis", ["historical"]),
        ("No fever or cough.", "fever or cough", ["negated"]),
        ("Mother had coronary artery disease.", "coronary artery disease", ["family"]),
        (
            "Type 2 diabetes mellitus without complications",
            "Type 2 diabetes mellitus without complications",
            [],
        ),
    ],
)
def test_context_flags(segmenter: Segmenter, text: str, span: str, flags: list[str]) -> None:
    spans = by_text(segment(segmenter, text))
    assert spans[span] == flags


def test_bad_notes(segmenter: Segmenter) -> None:
    with pytest.raises(EmptyNoteError):
        segment(segmenter, " \n\t ")
    with pytest.raises(NoteTooLargeError):
        segment(segmenter, "fever " * 1_000)


def test_examples_and_codiesp_dev_offsets(segmenter: Segmenter) -> None:
    big = Segmenter()
    paths = sorted(EXAMPLES.glob("*.txt"))
    if (CODIESP / "dev/text_files_en").is_dir():
        paths += sorted((CODIESP / "dev/text_files_en").glob("*.txt"))
    assert len(paths) >= 3
    for path in paths:
        text = Path(path).read_text(encoding="utf-8")
        note = big.segment(NoteIn(note_id="x", text=text))
        assert note.spans, path.name
        assert all(text[s.start : s.end] == s.text for s in note.spans), path.name
