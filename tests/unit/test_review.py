"""The review page's pure parts: cutting a note into highlighted segments, the catalogue
search, a review's final codes, and the memory records a reviewed note gives."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from icdcoder.api.review import safe_next
from icdcoder.review.highlight import Mark, segments
from icdcoder.review.learning import ExportStats, memory_records, reviewed_cases
from icdcoder.review.search import CatalogueSearch
from icdcoder.shared.catalogue import Catalogue, CodeInfo
from icdcoder.shared.memory import Example, MemoryNote, RejectedExample
from icdcoder.shared.messages import CodedNote, CodeResult, Evidence, VerifierInfo
from icdcoder.shared.store.review import DecisionRow, ReviewState

NOW = datetime(2026, 11, 28, tzinfo=UTC)


def test_segments_cover_the_text_and_carry_overlapping_codes_and_reasons() -> None:
    text = "abcdefghij"
    marks = [
        Mark(1, 5, code=0),
        Mark(3, 7, code=1),
        Mark(6, 9, reason="negated", excluded_code="R07.9"),
        Mark(8, 50, code=2),  # clipped to the text
        Mark(4, 4, code=3),  # empty: ignored
    ]
    out = segments(text, marks)
    assert "".join(s.text for s in out) == text
    assert [(s.start, s.end, s.codes, s.reasons) for s in out] == [
        (0, 1, (), ()),
        (1, 3, (0,), ()),
        (3, 5, (0, 1), ()),
        (5, 6, (1,), ()),
        (6, 7, (1,), ("R07.9: negated",)),
        (7, 8, (), ("R07.9: negated",)),
        (8, 9, (2,), ("R07.9: negated",)),
        (9, 10, (2,), ()),
    ]
    assert segments("", marks) == []
    assert [s.plain for s in segments("abc", [])] == [True]


def catalogue() -> Catalogue:
    def info(code: str, description: str, leaf: bool = True) -> CodeInfo:
        return CodeInfo(code, description, leaf, None, (), "", "")

    codes = [
        info("E11", "Type 2 diabetes mellitus", leaf=False),
        info("E11.2", "Type 2 diabetes mellitus with kidney complications", leaf=False),
        info("E11.21", "Type 2 diabetes mellitus with diabetic nephropathy"),
        info("E11.9", "Type 2 diabetes mellitus without complications"),
        info("I10", "Essential (primary) hypertension"),
        info("N18.9", "Chronic kidney disease, unspecified"),
    ]
    return Catalogue("test", {c.code: c for c in codes})


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("diab nephr", ["E11.21"]),
        ("DIABETES", ["E11.9", "E11.21", "E11", "E11.2"]),
        ("e11.2", ["E11.2", "E11.21"]),
        ("E112", ["E11.2", "E11.21"]),
        ("i10", ["I10"]),
        ("kidney", ["N18.9", "E11.2"]),
        ("", []),
        ("   ", []),
        ("zzz", []),
        ("--", []),
    ],
)
def test_catalogue_search_by_words_or_code(query: str, expected: list[str]) -> None:
    assert [hit.code for hit in CatalogueSearch(catalogue()).search(query)] == expected


def code(name: str, decision: str, start: int, end: int) -> CodeResult:
    return CodeResult(
        code=name,
        description=name,
        confidence=0.5,
        decision=decision,  # type: ignore[arg-type]
        justification="",
        evidence=[Evidence(span_id="s", start=start, end=end, text="")],
    )


TEXT = "Type 2 diabetes. Hypertension. Gout. Kidney disease."


def state(*decisions: tuple[str, str, tuple[tuple[int, int], ...]]) -> ReviewState:
    coded = CodedNote(
        note_id="n1",
        catalogue_version="test",
        codes=[
            code("E11.9", "accept", 0, 15),
            code("I10", "review", 17, 29),
            code("M10.9", "accept", 31, 35),
        ],
        excluded=[],
        verifier=VerifierInfo(backend="fake"),
    )
    rows = tuple(
        DecisionRow(c, a, "ana", i + 1, NOW, ev)  # type: ignore[arg-type]
        for i, (c, a, ev) in enumerate(decisions)
    )
    return ReviewState("n1", 1, 1, TEXT, coded, len(rows), "reviewed", "ana", NOW, rows)


def test_final_codes_confirm_the_systems_accepted_codes_left_alone_and_the_reviewers_choices() -> (
    None
):
    untouched = state()
    assert untouched.final_codes() == ["E11.9", "M10.9"]  # the review code is not confirmed
    reviewed = state(
        ("I10", "accept", ()),
        ("M10.9", "reject", ()),
        ("N18.9", "add", ((37, 51),)),
        ("N18.9", "reject", ()),
        ("N18.9", "add", ((37, 51),)),
    )
    assert reviewed.final_codes() == ["E11.9", "I10", "N18.9"]
    assert reviewed.rejected_codes() == ["M10.9"]


def test_a_reviewed_note_gives_examples_rejected_examples_and_a_coded_note() -> None:
    reviewed = state(("M10.9", "reject", ()), ("N18.9", "add", ((37, 51),)), ("Z00.0", "add", ()))
    stats = ExportStats()
    records = memory_records([reviewed], stats)
    assert [r for r in records if isinstance(r, Example)] == [
        Example(code="E11.9", text="Type 2 diabetes", source="review:n1"),
        Example(code="N18.9", text="Kidney disease", source="review:n1"),
    ]
    assert [r for r in records if isinstance(r, RejectedExample)] == [
        RejectedExample(rejected="M10.9", text="Gout", source="review:n1")
    ]
    assert [r for r in records if isinstance(r, MemoryNote)] == [
        MemoryNote(codes=("E11.9", "N18.9", "Z00.0"), text=TEXT, source="review:n1")
    ]
    assert (stats.examples, stats.rejected, stats.coded_notes) == (2, 1, 1)
    assert stats.added_without_evidence == 1
    assert [(c.case_id, c.codes) for c in reviewed_cases([reviewed])] == [
        ("n1", ("E11.9", "N18.9", "Z00.0"))
    ]


@pytest.mark.parametrize(
    ("target", "followed"),
    [
        ("/review/notes/a", "/review/notes/a"),
        ("//evil.example/x", "/review"),
        ("https://evil.example/", "/review"),
        ("/\\evil.example", "/review"),
        ("", "/review"),
    ],
)
def test_only_paths_of_this_site_are_followed_after_login(target: str, followed: str) -> None:
    assert safe_next(target) == followed
