"""The ICD-10-CM catalogue: codes, hierarchy, notes, and the texts retrieval searches.

Loaded from the PyPI package ``simple-icd-10-cm`` (FY2026 tabular list), optionally enriched
with extra retrieval texts per code: a pack's Alphabetic Index term paths ("Hypertension,
cardiorenal, with heart failure" -> I13.0), read by :mod:`icdcoder.shared.index_terms`.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.metadata
import os
import pickle
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from icdcoder.shared.codes import InvalidCodeError, normalise_code
from icdcoder.shared.logging import PublicError, get_logger

CATALOGUE_VERSION = "icd10cm-2026"

log = get_logger(__name__)

# A code reference inside a note: "E11.-", "P70.2", "C00-C96", "K85-K86.-", "O24.4-".
_REF_RE = re.compile(
    r"\b([A-Z][0-9][0-9A-Z](?:\.[0-9A-Z]{1,4})?)(?:-([A-Z][0-9][0-9A-Z](?:\.[0-9A-Z]{1,4})?))?"
)

#: Codes whose 7th character is implied when a coder has no more information:
#: "A" (initial encounter), the usual choice for an admission.
DEFAULT_SEVENTH = "A"


class CatalogueError(PublicError):
    """The catalogue or an index file could not be loaded."""


@dataclass(frozen=True)
class CodeInfo:
    code: str
    description: str
    is_leaf: bool
    parent: str | None
    children: tuple[str, ...]
    chapter: str
    block: str
    inclusion_terms: tuple[str, ...] = ()
    excludes1: tuple[str, ...] = ()
    excludes2: tuple[str, ...] = ()
    code_first: tuple[str, ...] = ()
    use_additional: tuple[str, ...] = ()


@dataclass(frozen=True)
class CodeRef:
    """A code or range named in a note: matches ``first``..``last`` and their descendants."""

    first: str
    last: str

    def covers(self, code: str) -> bool:
        compact = code.replace(".", "")
        lo, hi = self._bounds
        return lo <= compact[: len(lo)] and compact[: len(hi)] <= hi

    @cached_property
    def _bounds(self) -> tuple[str, str]:
        return self.first.replace(".", ""), self.last.replace(".", "")


def parse_refs(note: str) -> list[CodeRef]:
    """The code references in a catalogue note, e.g. ``"type 1 (E10.-)"`` -> [E10..E10]."""
    refs: list[CodeRef] = []
    for first, last in _REF_RE.findall(note):
        refs.append(CodeRef(first, last or first))
    return refs


@dataclass(frozen=True)
class RetrievalText:
    code: str
    text: str
    source: str  # "description" | "inclusion" | "index"


#: Code pairs whose Excludes1 verdict a catalogue remembers (about 100 bytes each).
PAIRS_REMEMBERED = 1 << 18


@dataclass
class Catalogue:
    """Every ICD-10-CM code (categories, subcategories, 7th-character codes) with its notes."""

    version: str
    codes: dict[str, CodeInfo]
    index_terms: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def get(self, code: str) -> CodeInfo | None:
        try:
            return self.codes.get(normalise_code(code))
        except InvalidCodeError:
            return None

    def is_valid(self, code: str) -> bool:
        return self.get(code) is not None

    def is_leaf(self, code: str) -> bool:
        """Whether the code can be assigned in this edition (a code, not a category)."""
        info = self.get(code)
        return info is not None and info.is_leaf

    def ancestors(self, code: str) -> list[str]:
        """Parent, grandparent, ... up to the category (chapters and blocks excluded)."""
        out: list[str] = []
        info = self.get(code)
        while info is not None and info.parent is not None and info.parent in self.codes:
            out.append(info.parent)
            info = self.codes[info.parent]
        return out

    def is_ancestor(self, ancestor: str, code: str) -> bool:
        return ancestor in self.ancestors(code)

    @cached_property
    def _excludes1_refs(self) -> dict[str, tuple[CodeRef, ...]]:
        return {
            code: tuple(ref for note in info.excludes1 for ref in parse_refs(note))
            for code, info in self.codes.items()
            if info.excludes1
        }

    def excludes1(self, code: str) -> tuple[CodeRef, ...]:
        """Excludes1 references that apply to ``code``: its own and its ancestors' notes
        (remembered per code: the aggregator asks for every pair of a note's codes)."""
        refs = self._excludes1_seen.get(code)
        if refs is None:
            refs = tuple(
                ref
                for c in [code, *self.ancestors(code)]
                for ref in self._excludes1_refs.get(c, ())
            )
            self._excludes1_seen[code] = refs
        return refs

    @cached_property
    def _excludes1_seen(self) -> dict[str, tuple[CodeRef, ...]]:
        return {}

    def excludes1_conflict(self, a: str, b: str) -> bool:
        """True when the two codes may not be reported together (Excludes1, either way).

        Remembered per pair (up to :data:`PAIRS_REMEMBERED`, then forgotten all at once, so a
        worker's memory stays bounded): the aggregator checks each code against every accepted
        one, and the same pairs come back note after note."""
        pair = (a, b) if a <= b else (b, a)
        seen = self._excludes1_pairs
        conflict = seen.get(pair)
        if conflict is None:
            if len(seen) >= PAIRS_REMEMBERED:
                seen.clear()
            conflict = seen[pair] = any(ref.covers(b) for ref in self.excludes1(a)) or any(
                ref.covers(a) for ref in self.excludes1(b)
            )
        return conflict

    @cached_property
    def _excludes1_pairs(self) -> dict[tuple[str, str], bool]:
        return {}

    def billable(self, code: str) -> tuple[str, str | None]:
        """The reportable code for ``code`` and a note on what was assumed, if anything.

        A code whose children are all 7th-character extensions gets the default 7th character
        (``S02.0`` -> ``S02.0XXA``, initial encounter). Other codes are returned unchanged.
        """
        info = self.get(code)
        if info is None or info.is_leaf or not info.children:
            return code, None
        compact = info.code.replace(".", "")
        if not all(len(c.replace(".", "")) == 7 for c in info.children):
            return info.code, None
        padded = compact.ljust(6, "X") + DEFAULT_SEVENTH
        candidate = f"{padded[:3]}.{padded[3:]}"
        if candidate in self.codes:
            return candidate, f"7th character {DEFAULT_SEVENTH} (initial encounter) assumed"
        return info.code, None

    def assignable(self, code: str) -> str:
        """The code a coder assigns for ``code`` when the note says no more: ``code`` itself
        when it is a leaf, else, down its subdivisions, the child the classification keeps for
        the unspecified case (``N17`` -> ``N17.9``, ``I21`` -> ``I21.9``, ``C64`` -> ``C64.9``,
        ``F17.2`` -> ``F17.200`` "uncomplicated").

        A code without such a child is returned unchanged: a right or left eye with no
        unspecified one, an intent to be stated (T codes), or children that are 7th-character
        extensions (:meth:`billable` gives those their default).
        """
        info = self.get(code)
        if info is None:
            return code
        current = info
        while not current.is_leaf and current.children:
            if all(len(c.replace(".", "")) == 7 for c in current.children):
                break
            child = self._default_child(current)
            if child is None:
                break
            current = child
        return current.code if current.is_leaf else info.code

    def _default_child(self, info: CodeInfo) -> CodeInfo | None:
        """The child that stands for ``info`` with nothing more said, or None."""
        children = [self.codes[c] for c in info.children if c in self.codes]
        if len(children) == 1:
            return children[0]
        titles = [c.description.lower() for c in children]
        parent = info.description.lower()
        for child, title in zip(children, titles, strict=True):
            if (
                title == parent
                or title.startswith(f"{parent} without ")
                or title.endswith("uncomplicated")
                or "without complication" in title
            ):
                return child
        # a child the classification names unspecified, beyond what the parent says already
        unspecified = [
            (not title.endswith("unspecified"), -i, child)
            for i, (child, title) in enumerate(zip(children, titles, strict=True))
            if title.count("unspecified") > parent.count("unspecified")
        ]
        return min(unspecified, key=lambda t: t[:2])[2] if unspecified else None

    def texts_of(self, code: str) -> list[RetrievalText]:
        """One code's retrieval texts: description, inclusion terms, index paths."""
        info = self.codes[code]
        return [
            RetrievalText(code, info.description, "description"),
            *(RetrievalText(code, term, "inclusion") for term in info.inclusion_terms),
            *(RetrievalText(code, t, "index") for t in self.index_terms.get(code, ())),
        ]

    def retrieval_texts(self, *, with_index: bool = True) -> list[RetrievalText]:
        """What the retriever embeds: one row per (code, text); 7th-character codes excluded.

        7th-character extensions (51k codes that repeat their parent's text with an encounter
        suffix) are reached through :meth:`billable` instead of being embedded.
        """
        rows: list[RetrievalText] = []
        for code, info in self.codes.items():
            if _is_seventh_character(code):
                continue
            rows.append(RetrievalText(code, info.description, "description"))
            rows.extend(RetrievalText(code, term, "inclusion") for term in info.inclusion_terms)
            if with_index:
                rows.extend(RetrievalText(code, t, "index") for t in self.index_terms.get(code, ()))
        return rows


def _is_seventh_character(code: str) -> bool:
    return len(code.replace(".", "")) == 7


def load_catalogue(
    index_terms: Mapping[str, tuple[str, ...]] | None = None, *, cache_dir: Path | None = None
) -> Catalogue:
    """Load FY2026 ICD-10-CM from ``simple-icd-10-cm``; ``index_terms`` are extra retrieval
    texts per code (a pack's enrichment, :mod:`icdcoder.shared.index_terms`).

    With ``cache_dir`` the parsed codes are kept there, keyed by the package's version, and
    read back in a fraction of the time parsing the tabular list takes (start-up)."""
    codes = _cached_codes(cache_dir) if cache_dir is not None else _parse_codes()
    return Catalogue(version=CATALOGUE_VERSION, codes=codes, index_terms=dict(index_terms or {}))


#: Bump when :class:`CodeInfo` changes: older cache files are then ignored.
_CACHE_FORMAT = 1


def _cached_codes(cache_dir: Path) -> dict[str, CodeInfo]:
    """The parsed codes from a pickle in the cache folder (a folder the service trusts as it
    trusts the vector index and the exported encoder beside it), written on first use."""
    version = importlib.metadata.version("simple-icd-10-cm")
    path = cache_dir / f"catalogue-{CATALOGUE_VERSION}-{version}-f{_CACHE_FORMAT}.pickle"
    if path.is_file():
        gc.disable()  # a hundred thousand small objects: no collections while they are made
        try:
            with path.open("rb") as f:
                codes: dict[str, CodeInfo] = pickle.load(f)
            return codes
        except Exception as exc:
            log.warning("catalogue_cache_unusable", path=str(path), error=type(exc).__name__)
        finally:
            gc.enable()
    codes = _parse_codes()
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("wb") as f:
            pickle.dump(codes, f, protocol=pickle.HIGHEST_PROTOCOL)
        tmp.replace(path)
    except OSError as exc:  # a read-only cache (an image's): parse again next start
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        log.warning("catalogue_cache_not_written", path=str(path), error=type(exc).__name__)
    return codes


def _parse_codes() -> dict[str, CodeInfo]:
    import simple_icd_10_cm as cm  # deferred: importing parses the whole tabular list

    def is_code(name: str) -> bool:
        # Some blocks share their name with their only category (B20, C50, D49, R99, ...):
        # the name is then listed twice and ``simple_icd_10_cm`` answers for the category.
        return cm.is_category(name) or not cm.is_chapter_or_block(name)

    codes: dict[str, CodeInfo] = {}
    for raw in cm.get_all_codes(with_dots=True):
        if raw in codes or not is_code(raw):
            continue
        ancestors = cm.get_ancestors(raw)
        chapter = next((a for a in ancestors if cm.is_chapter(a)), "")
        block = next((a for a in ancestors if cm.is_block(a)), "")
        parent = cm.get_parent(raw)
        codes[raw] = CodeInfo(
            code=raw,
            description=cm.get_description(raw),
            is_leaf=cm.is_leaf(raw),
            parent=parent if parent and parent != raw and is_code(parent) else None,
            children=tuple(cm.get_children(raw)),
            chapter=chapter,
            block=block,
            inclusion_terms=_notes(cm.get_inclusion_term(raw)),
            excludes1=_notes(cm.get_excludes1(raw)),
            excludes2=_notes(cm.get_excludes2(raw)),
            code_first=_notes(cm.get_code_first(raw)),
            use_additional=_notes(cm.get_use_additional_code(raw)),
        )
    return codes


def _notes(value: str | Iterable[str]) -> tuple[str, ...]:
    """A note field as a tuple: ``simple_icd_10_cm`` gives some single notes as a bare string,
    and an absent one as ``""``."""
    if isinstance(value, str):
        return (value,) if value.strip() else ()
    return tuple(v for v in value if v.strip())


def iter_leaves(catalogue: Catalogue) -> Iterable[CodeInfo]:
    return (info for info in catalogue.codes.values() if info.is_leaf)
