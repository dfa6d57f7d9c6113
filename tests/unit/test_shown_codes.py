"""What a coder is shown: accepted codes and a few review suggestions; the result keeps all."""

from icdcoder.render import shown_codes, table
from icdcoder.services.verifier.similarity import category_mass
from icdcoder.shared.messages import CodedNote, CodeResult, VerifierInfo


def note(decisions: str) -> CodedNote:
    codes = [
        CodeResult(
            code=f"A0{i}.0",
            description=f"code {i}",
            confidence=round(1 - i / 10, 2),
            decision="accept" if d == "a" else "review",
            justification="",
            evidence=[],
        )
        for i, d in enumerate(decisions)
    ]
    return CodedNote(
        note_id="n1",
        catalogue_version="icd10cm-2026",
        codes=codes,
        excluded=[],
        verifier=VerifierInfo(backend="test"),
    )


def test_accepted_codes_and_the_best_review_suggestions_are_shown() -> None:
    coded = note("arrarra")
    assert [rank for rank, _ in shown_codes(coded, 2)] == [1, 2, 3, 4, 7]
    assert [rank for rank, _ in shown_codes(coded, 0)] == [1, 4, 7]
    assert len(shown_codes(coded)) == 7
    out = table(coded, 2)
    assert "A05.0" not in out and "A06.0" in out
    assert "2 more review suggestions" in out
    assert "more review" not in table(coded)


def test_a_category_whose_codes_together_are_likely_gets_its_best_code_accepted() -> None:
    ranked = [("S72.00", 0.06), ("S72.041", 0.06), ("S72.091", 0.05), ("N39.0", 0.3)]
    ranked += [("S72.001", 0.03), ("J18.9", 0.1), ("J18.0", 0.01)]
    promoted = category_mass(ranked, 0.15)
    assert list(promoted) == ["S72.00"]  # the first best; J18 together stays below 0.15
    assert round(promoted["S72.00"], 4) == round(1 - 0.94 * 0.94 * 0.95 * 0.97, 4)
    assert category_mass(ranked, 0.15, eligible={"S72.041"}) == {}
    assert category_mass(ranked, 0.05) == {}  # a code of each category is accepted already
