"""The ICD-10-CM Alphabetic Index as retrieval texts: each term path with the code it leads to.

Coders look a condition up in the Alphabetic Index (main term, then modifiers) before checking
the Tabular List; its term paths ("Hypertension, cardiorenal, with heart failure" -> I13.0) are
the words notes use far more often than the tabular descriptions. A pack keeps them as its
enrichment (:mod:`icdcoder.shared.pack`); the built-in pack ships them (``make default-pack``
derives its file). This module reads the files CMS publishes each fiscal year, in either form:

- the official XML (``icd10cm-index-*.xml``, ``icd10cm-eindex-*.xml``: ``mainTerm``/``term``
  elements with ``title`` and ``code``; the neoplasm and drug tables' ``cell`` columns named by
  their ``indexHeading``);
- the flattened CSV (``RowID,Letter,Level,Term,...,Code``; the tables with one column per
  heading, e.g. ``MalignantPrimary``).

A table cell becomes the term path with its column ("Neoplasm, lung, malignant primary").
Nonessential modifiers (in parentheses) are left out of the path, as the CSV does.

A term with no code of its own that says *see* or *see also* another ("Abdominalgia - see
Pain, abdominal"; "Necrosis, necrotic - see also Gangrene") leads where a coder following the
reference would go: to the code of the term it names, when that term has one (``followed``).
A reference to a term without a code of its own ("see Necrosis, by site") leads nowhere.

Codes are checked against the catalogue: a code ending in ``-`` (incomplete) or one the tabular
list of this fiscal year does not have maps to its longest valid prefix, a 7th-character code
to the code it extends (``mapped``); what has no valid prefix is dropped (``dropped``).
"""

from __future__ import annotations

import csv
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from icdcoder.shared.catalogue import Catalogue, CatalogueError
from icdcoder.shared.codes import InvalidCodeError, normalise_code


@dataclass
class IndexTerms:
    """Term paths per catalogue code, where they came from, and what needed mapping."""

    source: str
    texts: dict[str, tuple[str, ...]] = field(default_factory=dict)
    mapped: int = 0
    dropped: int = 0
    #: Terms whose code came from the term their *see* or *see also* names.
    followed: int = 0


class Entry(NamedTuple):
    """A term as a reader yields it: its path and raw code, or no code and the term it refers
    to; ``main_term`` is the path's first term."""

    path: str
    code: str | None
    see: str | None = None
    main_term: str = ""


def index_terms(entries: Iterable[Entry], catalogue: Catalogue, *, source: str) -> IndexTerms:
    """Group term paths by catalogue code, cross-references followed (the module docstring)."""
    result = IndexTerms(source=source)
    entries = list(entries)
    coded: dict[str, str] = {}  # a term path's key -> its code; the first entry of a path wins
    for e in entries:
        if e.code is not None:
            coded.setdefault(_path_key(e.path), e.code)
    for e in entries:  # then the main term "Necrosis, necrotic" as a reference names it
        if e.code is not None and ", " in e.main_term:
            alias = e.main_term.split(", ", 1)[0] + e.path[len(e.main_term) :]
            coded.setdefault(_path_key(alias), e.code)
    pairs: list[tuple[str, str]] = []
    for e in entries:
        if e.code is not None:
            pairs.append((e.path, e.code))
        elif e.see is not None and (target := coded.get(_path_key(e.see))) is not None:
            pairs.append((e.path, target))
            result.followed += 1
    grouped: dict[str, list[str]] = {}
    for term_path, raw_code in pairs:
        code = resolve_index_code(raw_code, catalogue)
        if code is None:
            result.dropped += 1
            continue
        if code != raw_code:
            result.mapped += 1
        grouped.setdefault(code, []).append(term_path)
    result.texts = {code: tuple(dict.fromkeys(items)) for code, items in grouped.items()}
    return result


def read_index_csv(path: Path, catalogue: Catalogue) -> IndexTerms:
    """The flattened index CSV (``RowID,Letter,Level,Term,See,SeeAlso,NonEssModif,Code``)."""
    if not path.is_file():
        raise CatalogueError(f"alphabetic index not found: {path}")
    return index_terms(csv_paths(path), catalogue, source=path.name)


def read_index(paths: Sequence[Path], catalogue: Catalogue) -> IndexTerms:
    """Term paths from index files, XML or CSV, index or table (told apart by their content),
    merged in the order given; ``source`` names each file."""
    if not paths:
        raise CatalogueError("no alphabetic index file given")
    entries: list[Entry] = []
    for path in paths:
        if not path.is_file():
            raise CatalogueError(f"alphabetic index not found: {path}")
        reader = xml_paths if path.suffix.lower() == ".xml" else any_csv_paths
        entries.extend(reader(path))
    return index_terms(entries, catalogue, source=" + ".join(p.name for p in paths))


def _path_key(term_path: str) -> str:
    """A term path as a reference names it: lower case, without nonessential modifiers or
    "NEC" ("Smoker - see Dependence, drug, nicotine" names "Dependence, drug NEC, nicotine"),
    singular or plural alike ("see Complications, transfusion" names "Complication(s)")."""
    words = re.sub(r"\([^)]*\)", " ", term_path).lower().replace(",", " , ").split()
    return " ".join(_singular(word) for word in words if word != "nec")


def _singular(word: str) -> str:
    """A word without its final "s" (both sides of a reference lose it alike)."""
    return word[:-1] if len(word) > 3 and word.endswith("s") else word


def any_csv_paths(path: Path) -> Iterator[Entry]:
    """A flattened CSV: the index (a ``Code`` column) or a table (one column per heading)."""
    with path.open(newline="", encoding="utf-8") as handle:
        header = next(csv.reader(handle), [])
    if "Code" in header:
        return csv_paths(path)
    return table_csv_paths(path)


def csv_paths(path: Path) -> Iterator[Entry]:
    """An :class:`Entry` for each coded or referring row: ``Level`` is the depth under the main
    term, so a row's path is the terms of the rows above it at lower levels."""
    stack: list[str] = []
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            try:
                level = int(row["Level"])
            except (KeyError, TypeError, ValueError) as exc:
                raise CatalogueError(f"{path}: not a flattened ICD-10-CM index CSV") from exc
            term = " ".join(row["Term"].split())
            del stack[level:]
            stack.append(term)
            if row.get("Code"):
                yield Entry(", ".join(stack), row["Code"].strip(), main_term=stack[0])
            elif reference := (row.get("See") or row.get("SeeAlso") or "").strip():
                yield Entry(", ".join(stack), None, reference)


#: CSV table columns that are not headings.
_TABLE_META = {"RowID", "Letter", "Level", "Term", "See", "SeeAlso", "NonEssModif"}


def table_csv_paths(path: Path) -> Iterator[Entry]:
    """A flattened table (neoplasms, drugs): each coded cell as ``path, heading``."""
    stack: list[str] = []
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = [c for c in reader.fieldnames or () if c not in _TABLE_META]
        if "Term" not in (reader.fieldnames or ()) or not columns:
            raise CatalogueError(f"{path}: not a flattened ICD-10-CM index or table CSV")
        headings = {c: _split_camel(c) for c in columns}
        for row in reader:
            try:
                level = int(row["Level"])
            except (KeyError, TypeError, ValueError) as exc:
                raise CatalogueError(f"{path}: not a flattened ICD-10-CM table CSV") from exc
            del stack[level:]
            stack.append(" ".join(row["Term"].split()))
            for column in columns:
                code = (row.get(column) or "").strip()
                if _is_code(code):
                    yield Entry(f"{', '.join(stack)}, {headings[column]}", code)


def xml_paths(path: Path) -> Iterator[Entry]:
    """The CMS XML of the index (``code`` under a term) or of a table (``cell`` columns)."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise CatalogueError(f"{path}: not XML ({exc})") from None
    if root.tag != "ICD10CM.index":
        raise CatalogueError(f"{path}: not an ICD-10-CM index (root <{root.tag}>)")
    headings = {
        head.get("col", ""): " ".join((head.text or "").split()).lower()
        for head in root.iterfind("indexHeading/head")
    }
    for letter in root.iterfind("letter"):
        for main in letter.iterfind("mainTerm"):
            yield from _xml_term(main, [], headings)


def _xml_term(element: ET.Element, above: list[str], headings: dict[str, str]) -> Iterator[Entry]:
    title = element.find("title")
    path = [*above, _title_text(title) if title is not None else ""]
    joined = ", ".join(part for part in path if part)
    codes = [c for e in element.iterfind("code") if _is_code(c := (e.text or "").strip())]
    for code in codes:
        yield Entry(joined, code, main_term=path[0])
    for cell in element.iterfind("cell"):
        value = (cell.text or "").strip()
        if _is_code(value):
            yield Entry(f"{joined}, {headings.get(cell.get('col', ''), '')}".rstrip(", "), value)
    reference = element.findtext("see") or element.findtext("seeAlso")
    if not codes and reference:
        yield Entry(joined, None, " ".join(reference.split()))
    for child in element.iterfind("term"):
        yield from _xml_term(child, path, headings)


def _title_text(title: ET.Element) -> str:
    """A term's words without its nonessential modifiers (``nemod``), as the CSV gives them."""
    parts = [title.text or ""]
    for child in title:
        if child.tag != "nemod":
            parts.append(child.text or "")
        parts.append(child.tail or "")
    return " ".join("".join(parts).split())


_CODE = re.compile(r"^[A-Z][0-9][0-9A-Z](\.?[0-9A-Z-]{0,4})?-?$")


def _is_code(raw: str) -> bool:
    return bool(_CODE.match(raw))


def _split_camel(name: str) -> str:
    """``MalignantPrimary`` -> ``malignant primary`` (a CSV table column as its heading)."""
    return " ".join(re.findall(r"[A-Z][a-z]*|[a-z]+", name)).lower()


def resolve_index_code(raw: str, catalogue: Catalogue) -> str | None:
    """The catalogue code an index entry leads to: itself, its longest valid prefix, or the
    code a 7th-character code extends; None when nothing valid is left."""
    candidate = raw.rstrip("-").rstrip(".")
    while len(candidate.replace(".", "")) >= 3:
        try:
            code = normalise_code(candidate)
        except InvalidCodeError:
            return None
        if code in catalogue.codes:
            while len(code.replace(".", "")) == 7:
                parent = catalogue.codes[code].parent
                if parent is None:
                    return None
                code = parent
            return code
        candidate = candidate[:-1].rstrip(".")
    return None
