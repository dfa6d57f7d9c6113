"""Coded corpora: the notes ``icdcoder train`` learns from, each with its document-level codes.

A :class:`Corpus` is anything that can list :class:`CodedCase` objects and say whether results
are reported on it. CodiEsp splits are the one source today (:class:`CodiEspCorpus`); a table of
reviewed notes in a database, or a folder of notes beside a codes file, plugs in by
implementing the same two members. Cases that were coded in the example memory must carry the
same case id as the memory's ``source`` tail (``codiesp-train:<case id>``): that is how a case's
own examples and coded note are left out when it is fitted on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from icdcoder.codiesp import CodiEspError, Language, read_split
from icdcoder.shared.logging import PublicError
from icdcoder.shared.messages import NoteIn

#: Splits whose results are reported: never fitted on.
REPORTED_SPLITS = frozenset({"dev", "test"})


class CorpusError(PublicError):
    """A corpus that cannot be trained on (one line)."""


@dataclass(frozen=True)
class CodedCase:
    """One note with its confirmed codes (gold form or catalogue form: compared lower case)."""

    case_id: str
    text: str
    codes: tuple[str, ...]

    def note(self) -> NoteIn:
        return NoteIn(note_id=self.case_id, text=self.text)

    def gold(self) -> frozenset[str]:
        return frozenset(code.lower() for code in self.codes)


class Corpus(Protocol):
    """A source of coded cases."""

    @property
    def name(self) -> str:
        """Short and stable (``codiesp-train``): names caches and provenance."""
        ...

    @property
    def description(self) -> str:
        """For people: ``CodiEsp train (English)``."""
        ...

    @property
    def reported(self) -> bool:
        """True when results are reported on this corpus: it must never be fitted on."""
        ...

    def cases(self) -> Sequence[CodedCase]:
        """Every case, in a stable order (the first N of a fit are the first N of this)."""
        ...


@dataclass(frozen=True)
class CaseList:
    """Cases already in hand: from a database query, a test, an export."""

    name: str
    items: tuple[CodedCase, ...]
    description: str = ""
    reported: bool = False

    def cases(self) -> Sequence[CodedCase]:
        return self.items


LANGUAGE_NAMES: dict[Language, str] = {"en": "English", "es": "Spanish"}


@dataclass(frozen=True)
class CodiEspCorpus:
    """A CodiEsp split (``<data>/<split>``) with its CodiEsp-D gold codes, sorted by case id."""

    data: Path
    split: str
    lang: Language = "en"

    @property
    def name(self) -> str:
        return f"codiesp-{self.split}" + ("" if self.lang == "en" else f"-{self.lang}")

    @property
    def description(self) -> str:
        return f"CodiEsp {self.split} ({LANGUAGE_NAMES[self.lang]})"

    @property
    def reported(self) -> bool:
        return self.split in REPORTED_SPLITS

    def cases(self) -> Sequence[CodedCase]:
        try:
            split = read_split(self.data, self.split, lang=self.lang)
        except CodiEspError as exc:
            raise CorpusError(str(exc)) from None
        return [CodedCase(case.case_id, case.text, case.gold) for case in split]


def trainable_cases(corpus: Corpus) -> list[CodedCase]:
    """The corpus's cases, or :class:`CorpusError` when it is reported on or empty."""
    if corpus.reported:
        raise CorpusError(
            f"refusing to fit on {corpus.name}: results are reported on it "
            "(fit on train, report on dev)"
        )
    cases = list(corpus.cases())
    if not cases:
        raise CorpusError(f"{corpus.name}: no cases to fit on")
    ids = [case.case_id for case in cases]
    if len(set(ids)) != len(ids):
        raise CorpusError(f"{corpus.name}: case ids are not unique")
    return cases


def corpus_digest(cases: Sequence[CodedCase]) -> str:
    """What the retrieval of these cases depends on: their ids and texts (not their codes)."""
    h = hashlib.sha256()
    for case in cases:
        h.update(f"{case.case_id}\t{len(case.text)}\t".encode())
        h.update(case.text.encode())
    return h.hexdigest()[:12]
