"""Reading notes from files or stdin, with one clear error per bad input."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from icdcoder.shared.messages import NoteIn

_UNSAFE = re.compile(r"[^A-Za-z0-9._:\-]+")


class InputError(ValueError):
    """A note that cannot be coded; the message is one line, fit for the terminal."""


def note_id_for(path: str) -> str:
    """A note id from a file name (``notes/adm 01.txt`` -> ``adm-01``); ``-`` -> ``stdin``."""
    if path == "-":
        return "stdin"
    stem = _UNSAFE.sub("-", Path(path).stem).strip("-._:") or "note"
    return stem[:200]


def read_note(path: str, *, max_chars: int, note_id: str | None = None) -> NoteIn:
    """Read one note; raise :class:`InputError` for anything that is not a codable note."""
    label = "stdin" if path == "-" else path
    try:
        raw = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except FileNotFoundError:
        raise InputError(f"{label}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{label}: is a directory, not a note") from None
    except PermissionError:
        raise InputError(f"{label}: permission denied") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{label}: not UTF-8 text (bad byte at offset {exc.start})") from None
    if not text.strip():
        raise InputError(f"{label}: the note is empty")
    if len(text) > max_chars:
        raise InputError(
            f"{label}: the note has {len(text):,} characters, over the limit of {max_chars:,} "
            "(ICDCODER_MAX_NOTE_CHARS)"
        )
    return NoteIn(note_id=note_id or note_id_for(path), text=text)
