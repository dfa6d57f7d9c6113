"""Sentences: where a sentence starts and ends, and which section it is in.

Sentence punctuation (". " before a capital or digit), blank lines, list items (a bullet or
"1." at a line's start, or a capitalised line after a short unpunctuated one: "Kaposi
sarcoma" / "COPD") and header lines end a sentence; a line wrapped inside a paragraph does
not. Header text and list bullets belong to no sentence; a piece of text with no word of two
letters is not a sentence. Sentences are also ConText's scope (``context.py``).

Which lines are headers is ``sections.line_header``'s decision, passed in as ``header``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from icdcoder.services.segmenter.sections import Header, line_header

#: Whether the line ``text[start:end]`` is a header: ``(text, start, end) -> Header | None``.
HeaderRule = Callable[[str, int, int], Header | None]


@dataclass(frozen=True)
class Sentence:
    """``text[start:end]``, stripped, in section ``section`` ("" before any header)."""

    start: int
    end: int
    section: str


#: A note's text -> its sentences with their sections, in text order, not overlapping
#: (:func:`split_sentences` is ours; ``variants.py`` has the bench's alternatives).
SentenceSplitter = Callable[[str], Iterable[Sentence]]


#: A list bullet at a line's start ("- ", "1. ", "\u2022 "): not part of any sentence.
BULLET_RE = re.compile(r"[ \t]*(?:\d{1,3}[.)]|[-*\u2022\u25aa\u25cf])[ \t]+")
_SENTENCE_END_RE = re.compile(r"(?<=[.!?])[ \t]+(?=[\"'(\[]?[A-Z0-9])")
_LETTER_RE = re.compile(r"[A-Za-z]{2,}")
#: A line this short that a capitalised line follows is a list item, not a wrapped line.
SHORT_LINE = 50
_CONTINUED_RE = re.compile(r"(?:[,;(/&+-]|\b(?:and|or|with|of|the|to|for|in|on|a|an))$", re.I)


def split_sentences(text: str, header: HeaderRule = line_header) -> Iterator[Sentence]:
    """Sentences with their section; header text and list bullets are left out."""
    section = ""
    inline_outer: str | None = None  # the section to go back to after an inline header's text
    open_start: int | None = None
    open_end = 0
    open_line = (0, 0)  # the last line added to the open sentence

    def close() -> Iterator[Sentence]:
        nonlocal open_start, section, inline_outer
        if open_start is not None:
            yield from _sentences_in(text, open_start, open_end, section)
        open_start = None
        if inline_outer is not None:
            section, inline_outer = inline_outer, None

    for start, end in lines(text):
        opened = header(text, start, end)
        if opened is not None:
            yield from close()
            outer = section
            section, start, inline = opened
            inline_outer = outer if inline else None
        bullet = BULLET_RE.match(text, start, end)
        if bullet or not text[start:end].strip():
            yield from close()
            if bullet:
                start = bullet.end()
        if not text[start:end].strip():
            continue
        if open_start is not None and _starts_list_line(text, start, open_line):
            yield from close()
        if open_start is None:
            open_start = start
        open_end = end
        open_line = (start, end)
        if text[start:end].rstrip().endswith((".", "!", "?", ":")):
            yield from close()
    yield from close()


def lines(text: str) -> Iterator[tuple[int, int]]:
    """Each line's (start, end), line break excluded."""
    pos = 0
    for line in text.splitlines(keepends=True):
        yield pos, pos + len(line.rstrip("\r\n"))
        pos += len(line)


def _starts_list_line(text: str, start: int, previous: tuple[int, int]) -> bool:
    """Whether the line at ``start`` begins a new item after a short unpunctuated line
    ("Kaposi sarcoma" / "COPD") rather than continuing a wrapped one."""
    if not (text[start].isupper() or text[start].isdigit()):
        return False
    line = text[previous[0] : previous[1]].rstrip()
    return len(line) < SHORT_LINE and not _CONTINUED_RE.search(line)


def _sentences_in(text: str, start: int, end: int, section: str) -> Iterator[Sentence]:
    """The sentences of one paragraph (lines joined), split at sentence punctuation."""
    pos = start
    for match in _SENTENCE_END_RE.finditer(text, start, end):
        yield from trimmed_sentence(text, pos, match.start(), section)
        pos = match.end()
    yield from trimmed_sentence(text, pos, end, section)


def trimmed_sentence(text: str, start: int, end: int, section: str) -> Iterator[Sentence]:
    """``text[start:end]`` without edge whitespace, if a word of two letters is left."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if end > start and _LETTER_RE.search(text, start, end):
        yield Sentence(start, end, section)
