"""The ICD-10-CM Alphabetic Index as retrieval texts: each term path with the code it leads to.

Coders look a condition up in the Alphabetic Index (main term, then modifiers) before checking
the Tabular List; its term paths ("Hypertension, cardiorenal, with heart failure" -> I13.0) are
the words notes use far more often than the tabular descriptions. A pack keeps them as its
enrichment (:mod:`icdcoder.shared.pack`); this module reads them from the CMS files.

Codes are checked against the catalogue: a code ending in ``-`` (incomplete) or one the tabular
list of this fiscal year does not have maps to its longest valid prefix, a 7th-character code
to the code it extends (``mapped``); what has no valid prefix is dropped (``dropped``).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from icdcoder.shared.catalogue import Catalogue, CatalogueError
from icdcoder.shared.codes import InvalidCodeError, normalise_code


@dataclass
class IndexTerms:
    """Term paths per catalogue code, where they came from, and what needed mapping."""

    source: str
    texts: dict[str, tuple[str, ...]] = field(default_factory=dict)
    mapped: int = 0
    dropped: int = 0


def index_terms(
    paths: Iterable[tuple[str, str]], catalogue: Catalogue, *, source: str
) -> IndexTerms:
    """Group ``(term path, raw code)`` pairs by catalogue code (see the module docstring)."""
    result = IndexTerms(source=source)
    grouped: dict[str, list[str]] = {}
    for term_path, raw_code in paths:
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


def csv_paths(path: Path) -> Iterator[tuple[str, str]]:
    """``(term path, code)`` for each coded row: ``Level`` is the depth under the main term, so
    a row's path is the terms of the rows above it at lower levels."""
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
                yield ", ".join(stack), row["Code"].strip()


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
