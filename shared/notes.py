"""What makes a note codable at all: the one place that checks it (CLI, bus, HTTP, backfill)."""

from __future__ import annotations

import hashlib

from icdcoder.shared.logging import PublicError


def content_hash(text: str) -> str:
    """SHA-256 of the note's UTF-8 text: with the note id, what identifies a note version."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class NoteRejected(PublicError, ValueError):
    """A note that cannot be coded; the message says why in one line, without its text."""


class EmptyNoteError(NoteRejected):
    """The note has no text to code."""


class NoteTooLargeError(NoteRejected):
    """The note is over the configured size limit."""


def check_note_text(text: str, max_chars: int) -> None:
    """Raise :class:`NoteRejected` for a note that is empty or longer than ``max_chars``."""
    if not text.strip():
        raise EmptyNoteError("the note is empty")
    if "\x00" in text:
        raise NoteRejected("the note contains NUL characters: it is not text")
    if len(text) > max_chars:
        raise NoteTooLargeError(
            f"the note has {len(text):,} characters, over the limit of {max_chars:,}"
        )
