import pytest

from icdcoder.shared.codes import InvalidCodeError, category, normalise_code


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("e119", "E11.9"),
        ("E11.9", "E11.9"),
        (" n23 ", "N23"),
        ("s02.0xxa", "S02.0XXA"),
        ("Z87442", "Z87.442"),
        ("qa0.0101", "QA0.0101"),  # FY2026 codes may have a letter second,
    ],
)
def test_normalise(raw: str, expected: str) -> None:
    assert normalise_code(raw) == expected


@pytest.mark.parametrize("raw", ["", "11.9", "E1", "E11.99999", "diabetes", "E1-1"])
def test_invalid(raw: str) -> None:
    with pytest.raises(InvalidCodeError):
        normalise_code(raw)


def test_category() -> None:
    assert category("e11.65") == "E11"
