"""ICDCODER_NEGATED_MENTIONS through the whole pipeline, with the real model and index."""

import asyncio

import pytest

from icdcoder.bootstrap import build_pipeline
from icdcoder.shared.messages import NoteIn
from icdcoder.shared.settings import Settings

pytestmark = pytest.mark.slow

TEXT = "Type 2 diabetes mellitus without complications. He did not report hematuria."


def coded(negated_mentions: str) -> tuple[dict[str, str], list[str]]:
    """(code -> decision, excluded codes) of the note."""
    settings = Settings().with_section(negated_mentions=negated_mentions)
    note = asyncio.run(build_pipeline(settings, progress=None).code(NoteIn(note_id="n", text=TEXT)))
    return {c.code: c.decision for c in note.codes}, [x.code for x in note.excluded]


def test_a_negated_finding_is_listed_for_review_only_when_asked() -> None:
    codes, _ = coded("exclude")
    assert codes.get("E11.9") == "accept"
    assert not any(code.startswith("R31") for code in codes)  # the guidelines: not coded

    codes_review, _ = coded("review")
    hematuria = [code for code in codes_review if code.startswith("R31")]
    assert hematuria, codes_review
    assert all(codes_review[code] == "review" for code in hematuria)  # never accepted
    assert codes_review.get("E11.9") == "accept"
