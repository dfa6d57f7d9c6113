import re
from pathlib import Path

import pytest

from icdcoder.inputs import InputError, note_id_for, read_note


def test_reads_utf8_note(tmp_path: Path) -> None:
    path = tmp_path / "adm 01.txt"
    path.write_text("Fièvre. Type 2 diabetes.", encoding="utf-8")
    note = read_note(str(path), max_chars=1000)
    assert note.note_id == "adm-01" and note.text == "Fièvre. Type 2 diabetes."


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "the note is empty"),
        (b"  \n\t ", "the note is empty"),
        (b"caf\xe9 au lait", "not UTF-8 text (bad byte at offset 3)"),
        (b"x" * 101, "over the limit of 100"),
    ],
)
def test_bad_notes(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(InputError, match=re.escape(message)):
        read_note(str(path), max_chars=100)


def test_missing_and_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        read_note(str(tmp_path / "nope.txt"), max_chars=100)
    with pytest.raises(InputError, match="is a directory"):
        read_note(str(tmp_path), max_chars=100)


def test_note_ids() -> None:
    assert note_id_for("-") == "stdin"
    assert note_id_for("/x/S0004-06142005000900016-1.txt") == "S0004-06142005000900016-1"
    assert note_id_for("/x/%%%.txt") == "note"
