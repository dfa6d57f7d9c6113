"""Words shared between a span and a code's text: the verifier's overlap features.

A catalogue text's *content words* leave out function words and the catalogue's own filler
("unspecified", "other", "type"); words are compared by a crude prefix stem so that
"calculi" meets "calculus" while "renal" and "kidney" stay apart.
"""

from __future__ import annotations

import re
from functools import lru_cache

_WORD_RE = re.compile(r"[a-z0-9]+")

#: Words that carry no condition: function words and the catalogue's filler.
FILLER_WORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "for",
        "from",
        "has",
        "have",
        "in",
        "is",
        "it",
        "of",
        "on",
        "or",
        "the",
        "to",
        "was",
        "were",
        "with",
        "without",
        "which",
        "who",
        "whom",
        "this",
        "that",
        "these",
        "those",
        "his",
        "her",
        "their",
        "its",
        "patient",
        "pt",
        "unspecified",
        "other",
        "nos",
        "specified",
        "type",
        "due",
        "than",
        "into",
    ]
)
#: Words too generic to count as evidence on their own.
WEAK_WORDS = frozenset(["disease", "disorder", "condition", "syndrome"])


def content_words(text: str) -> list[str]:
    return list(_content_words(text))


# The same span and catalogue texts are compared many times per note (and across notes): these
# pure functions of one string are cached.
@lru_cache(maxsize=1 << 16)
def _content_words(text: str) -> tuple[str, ...]:
    return tuple(w for w in _WORD_RE.findall(text.lower()) if w not in FILLER_WORDS)


def stem(word: str) -> str:
    """A crude prefix stem so 'renal'/'kidney' stay apart but 'calculi'/'calculus' meet."""
    return word[:6] if len(word) > 6 else word


@lru_cache(maxsize=1 << 16)
def stems(text: str) -> frozenset[str]:
    return frozenset(stem(w) for w in _content_words(text))


@lru_cache(maxsize=1 << 16)
def _strong_stems(code_text: str) -> frozenset[str]:
    return frozenset(stem(w) for w in _content_words(code_text) if w not in WEAK_WORDS)


def shared_words(span_text: str, code_text: str) -> list[str]:
    """Content words of ``span_text`` that also occur (by stem) in ``code_text``, in span order."""
    code_stems = stems(code_text)
    seen: dict[str, None] = {}
    for word in content_words(span_text):
        if stem(word) in code_stems:
            seen.setdefault(word)
    return list(seen)


def stem_coverage(text_stems: frozenset[str], code_text: str) -> float:
    """Share of the code text's content words (by stem, weak words aside) among ``text_stems``."""
    code = _strong_stems(code_text)
    if not code:
        return 0.0
    return len(code & text_stems) / len(code)


def coverage(span_text: str, code_text: str) -> float:
    """Share of the code text's content words (by stem) that the span contains."""
    return stem_coverage(stems(span_text), code_text)
