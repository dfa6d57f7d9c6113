"""Reading notes from files or stdin, with one clear error per bad input."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from icdcoder.shared.logging import PublicError
from icdcoder.shared.messages import NoteIn
from icdcoder.shared.notes import NoteRejected, NoteTooLargeError, check_note_text

_UNSAFE = re.compile(r"[^A-Za-z0-9._:\-]+")


class InputError(PublicError, ValueError):
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
    try:
        check_note_text(text, max_chars)
    except NoteRejected as exc:
        hint = " (ICDCODER_SEGMENTER__MAX_NOTE_CHARS)" if isinstance(exc, NoteTooLargeError) else ""
        raise InputError(f"{label}: {exc}{hint}") from None
    return NoteIn(note_id=note_id or note_id_for(path), text=text)
