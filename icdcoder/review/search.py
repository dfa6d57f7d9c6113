"""Catalogue search for the review page's typeahead: by code (``e11.9``, ``E119``, ``E11``) or
by words (every word of the query begins a word of the description: ``diab nephr``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from icdcoder.shared.catalogue import Catalogue

_WORD = re.compile(r"[a-z0-9]+")
_CODE_LIKE = re.compile(r"^[A-Za-z][0-9][0-9A-Za-z.]{0,6}$")


@dataclass(frozen=True)
class Hit:
    code: str
    description: str
    billable: bool


@dataclass(frozen=True)
class _Entry:
    code: str
    compact: str
    description: str
    words: tuple[str, ...]
    billable: bool


class CatalogueSearch:
    """An in-memory search over one catalogue (built once: about a second for 74,000 codes)."""

    def __init__(self, catalogue: Catalogue) -> None:
        self.version = catalogue.version
        self._entries = [
            _Entry(
                info.code,
                info.code.replace(".", ""),
                info.description,
                tuple(_WORD.findall(info.description.lower())),
                info.is_leaf,
            )
            for info in sorted(catalogue.codes.values(), key=lambda i: i.code)
        ]

    def search(self, query: str, limit: int = 20) -> list[Hit]:
        query = query.strip()
        if not query:
            return []
        if _CODE_LIKE.match(query):
            prefix = query.upper().replace(".", "")
            found = [e for e in self._entries if e.compact.startswith(prefix)]
            found.sort(key=lambda e: (len(e.compact), e.compact))
            if found:
                return [self._hit(e) for e in found[:limit]]
        terms = _WORD.findall(query.lower())
        if not terms:
            return []
        scored: list[tuple[tuple[int, int, int, str], _Entry]] = []
        for entry in self._entries:
            if all(any(word.startswith(t) for word in entry.words) for t in terms):
                exact = sum(1 for t in terms if t in entry.words)
                rank = (-exact, 0 if entry.billable else 1, len(entry.words), entry.code)
                scored.append((rank, entry))
        scored.sort(key=lambda pair: pair[0])
        return [self._hit(e) for _, e in scored[:limit]]

    @staticmethod
    def _hit(entry: _Entry) -> Hit:
        return Hit(entry.code, entry.description, entry.billable)
