"""The example memory: confirmed span -> code examples that retrieval also searches.

A coding team's confirmed codes are the best retrieval text there is: "adenopathy" coded R59.9
a hundred times says more than the catalogue's "Enlarged lymph nodes, unspecified". The memory
is a JSON-lines file, one confirmed example per line::

    {"code": "R59.9", "text": "multiple adenopathies", "source": "codiesp-train:S0004-...-1"}

``source`` says where the example came from (a corpus case, a coder's correction). A line with
``codes`` instead of ``code`` is a whole coded note (the verifier's similar-notes vote)::

    {"codes": ["N20.0", "R31.9"], "text": "A 54-year-old man ...", "source": "codiesp-train:..."}

The file is configuration (``ICDCODER_MEMORY_PATH``), like the catalogue: it is never shipped
in the repository. ``icdcoder memory codiesp`` builds one from CodiEsp train (see
``icdcoder/memory_codiesp.py``); ``icdcoder memory export`` builds one from the review page's
reviewed notes. A line with ``rejected`` is a code a reviewer rejected on that span (a negative
example): readers of examples and coded notes skip it, :func:`read_rejected` reads them::

    {"rejected": "I10", "text": "blood pressure was normal", "source": "review:adm-17"}
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from icdcoder.shared.catalogue import Catalogue
from icdcoder.shared.logging import PublicError


class ExampleMemoryError(PublicError, ValueError):
    """The memory file is missing or malformed (the message names the line)."""


class Example(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str = Field(min_length=3)
    text: str = Field(min_length=1)
    source: str = ""


class MemoryNote(BaseModel):
    """A whole note with its confirmed codes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    codes: tuple[str, ...] = Field(min_length=1)
    text: str = Field(min_length=1)
    source: str = ""


class RejectedExample(BaseModel):
    """A code a reviewer rejected for a span: what the system proposed and a coder refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rejected: str = Field(min_length=3)
    text: str = Field(min_length=1)
    source: str = ""


@dataclass(frozen=True)
class LoadedMemory:
    """Examples and coded notes with codes of the current catalogue, and the codes dropped."""

    examples: tuple[Example, ...]
    dropped_codes: tuple[str, ...]
    notes: tuple[MemoryNote, ...] = ()


def read_memory(path: Path) -> list[Example | MemoryNote]:
    """Every line of the memory file: span examples and coded notes, in file order (rejected
    examples left out)."""
    return [r for r in _read_records(path) if not isinstance(r, RejectedExample)]


def read_rejected(path: Path) -> list[RejectedExample]:
    """The memory file's rejected examples (negatives), in file order."""
    return [r for r in _read_records(path) if isinstance(r, RejectedExample)]


def _read_records(path: Path) -> list[Example | MemoryNote | RejectedExample]:
    if not path.is_file():
        raise ExampleMemoryError(f"example memory not found: {path}")
    records: list[Example | MemoryNote | RejectedExample] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                kind: type[Example | MemoryNote | RejectedExample] = Example
                if isinstance(data, dict) and "codes" in data:
                    kind = MemoryNote
                elif isinstance(data, dict) and "rejected" in data:
                    kind = RejectedExample
                records.append(kind.model_validate(data))
            except (json.JSONDecodeError, ValidationError) as exc:
                first = str(exc).splitlines()[0]
                raise ExampleMemoryError(
                    f"{path}:{number}: not a memory example ({first})"
                ) from exc
    return records


def read_examples(path: Path) -> list[Example]:
    return [record for record in read_memory(path) if isinstance(record, Example)]


def load_memory(path: Path, catalogue: Catalogue) -> LoadedMemory:
    """Examples normalised to catalogue codes; codes not in the catalogue are dropped.

    Codes only ever come from the current catalogue: an example whose code a newer catalogue
    retired is kept out of retrieval (and reported), not proposed.
    """
    kept: list[Example] = []
    notes: list[MemoryNote] = []
    dropped: set[str] = set()
    for record in read_memory(path):
        if isinstance(record, MemoryNote):
            codes = [catalogue.get(code) for code in record.codes]
            dropped.update(
                code for code, info in zip(record.codes, codes, strict=True) if info is None
            )
            current = tuple(dict.fromkeys(info.code for info in codes if info is not None))
            if current:
                notes.append(record.model_copy(update={"codes": current}))
            continue
        info = catalogue.get(record.code)
        if info is None:
            dropped.add(record.code)
            continue
        kept.append(record.model_copy(update={"code": info.code}))
    return LoadedMemory(tuple(kept), tuple(sorted(dropped)), tuple(notes))


def write_examples(path: Path, examples: Iterable[Example | MemoryNote | RejectedExample]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", encoding="utf-8") as handle:
        for example in examples:
            handle.write(example.model_dump_json() + "\n")
            count += 1
    return count
