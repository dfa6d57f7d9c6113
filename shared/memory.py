"""The example memory: confirmed span -> code examples that retrieval also searches.

A coding team's confirmed codes are the best retrieval text there is: "adenopathy" coded R59.9
a hundred times says more than the catalogue's "Enlarged lymph nodes, unspecified". The memory
is a JSON-lines file, one confirmed example per line::

    {"code": "R59.9", "text": "multiple adenopathies", "source": "codiesp-train:S0004-...-1"}

``source`` says where the example came from (a corpus case, a coder's correction). The file is
configuration (``ICDCODER_MEMORY_PATH``), like the catalogue: it is never shipped in the
repository. ``icdcoder memory codiesp`` builds one from CodiEsp train (see
``icdcoder/memory_codiesp.py``); corrections exported from a coding tool can be appended.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.catalogue import Catalogue


class ExampleMemoryError(ValueError):
    """The memory file is missing or malformed (the message names the line)."""


class Example(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str = Field(min_length=3)
    text: str = Field(min_length=1)
    source: str = ""


@dataclass(frozen=True)
class LoadedMemory:
    """Examples whose code is in the current catalogue, and how many were dropped."""

    examples: tuple[Example, ...]
    dropped_codes: tuple[str, ...]


def read_examples(path: Path) -> list[Example]:
    if not path.is_file():
        raise ExampleMemoryError(f"example memory not found: {path}")
    examples: list[Example] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                examples.append(Example.model_validate(json.loads(line)))
            except (json.JSONDecodeError, ValidationError) as exc:
                first = str(exc).splitlines()[0]
                raise ExampleMemoryError(
                    f"{path}:{number}: not a memory example ({first})"
                ) from exc
    return examples


def load_memory(path: Path, catalogue: Catalogue) -> LoadedMemory:
    """Examples normalised to catalogue codes; codes not in the catalogue are dropped.

    Codes only ever come from the current catalogue: an example whose code a newer catalogue
    retired is kept out of retrieval (and reported), not proposed.
    """
    kept: list[Example] = []
    dropped: set[str] = set()
    for example in read_examples(path):
        info = catalogue.get(example.code)
        if info is None:
            dropped.add(example.code)
            continue
        kept.append(example.model_copy(update={"code": info.code}))
    return LoadedMemory(tuple(kept), tuple(sorted(dropped)))


def write_examples(path: Path, examples: Iterable[Example]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", encoding="utf-8") as handle:
        for example in examples:
            handle.write(example.model_dump_json() + "\n")
            count += 1
    return count
