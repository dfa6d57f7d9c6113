"""Where a backfill reads notes from, one at a time: never a whole archive in memory.

- a folder of ``.txt`` files (recursively; the note id is the file's stem);
- JSON Lines: one object per line, ``{"id", "text", ...metadata}``;
- CSV with a header: an id and a text column, the other columns as metadata;
- a SQL query against a database URL, its rows streamed with a server-side cursor.

Each yields :class:`SourceRow` objects; a row that cannot be read (bytes that are not UTF-8, a
line that is not JSON, a missing column) is yielded with its ``problem`` and never stops the
run: the backfill records it as a failure and goes on.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from icdcoder.inputs import note_id_for
from icdcoder.shared.logging import PublicError


class SourceError(PublicError):
    """A source that cannot be read at all (missing file, bad query): the run cannot start."""


@dataclass(frozen=True)
class SourceRow:
    """One note as read: id, text and metadata, or what was wrong with it."""

    where: str  # file and line, for the failure record (never the text)
    note_id: str | None
    text: str | None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    problem: str | None = None


def _decode(raw: bytes) -> tuple[str | None, str | None]:
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        return None, f"not UTF-8 text (bad byte at offset {exc.start})"


def folder_rows(folder: Path) -> Iterator[SourceRow]:
    for path in sorted(folder.rglob("*.txt")):
        where = str(path)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            yield SourceRow(
                where, note_id_for(str(path)), None, problem=f"unreadable: {exc.strerror}"
            )
            continue
        text, problem = _decode(raw)
        yield SourceRow(where, note_id_for(str(path)), text, {"file": path.name}, problem)


def _record(where: str, data: Mapping[str, Any], id_key: str, text_key: str) -> SourceRow:
    note_id = data.get(id_key)
    text = data.get(text_key)
    metadata = {k: v for k, v in data.items() if k not in (id_key, text_key)}
    if note_id is None or note_id == "":
        return SourceRow(where, None, None, metadata, f"no {id_key!r}")
    if not isinstance(text, str):
        return SourceRow(where, str(note_id), None, metadata, f"no {text_key!r} text")
    return SourceRow(where, str(note_id), text, metadata)


def jsonl_rows(path: Path, id_key: str = "id", text_key: str = "text") -> Iterator[SourceRow]:
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            where = f"{path}:{number}"
            if not raw.strip():
                continue
            line, problem = _decode(raw)
            if line is None:
                yield SourceRow(where, None, None, problem=problem)
                continue
            try:
                data = json.loads(line)
            except (ValueError, RecursionError):
                yield SourceRow(where, None, None, problem="not a JSON object")
                continue
            if not isinstance(data, dict):
                yield SourceRow(where, None, None, problem="not a JSON object")
                continue
            yield _record(where, data, id_key, text_key)


def csv_rows(path: Path, id_key: str = "id", text_key: str = "text") -> Iterator[SourceRow]:
    csv.field_size_limit(sys.maxsize)  # discharge summaries are long fields
    with path.open(newline="", encoding="utf-8", errors="surrogateescape") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {id_key, text_key} <= set(reader.fieldnames):
            raise SourceError(f"{path}: the header needs the columns {id_key!r} and {text_key!r}")
        for number, data in enumerate(reader, start=2):
            where = f"{path}:{number}"
            text = data.get(text_key)
            if isinstance(text, str) and _has_surrogates(text):
                yield SourceRow(where, data.get(id_key), None, problem="not UTF-8 text")
                continue
            yield _record(where, data, id_key, text_key)


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def sql_rows(
    url: str, query: str, id_key: str = "id", text_key: str = "text", batch: int = 500
) -> Iterator[SourceRow]:
    """Rows of ``query`` (it must return ``id`` and ``text`` columns), streamed."""
    from sqlalchemy import text as sql
    from sqlalchemy.exc import SQLAlchemyError

    from icdcoder.shared.store.engine import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            result = connection.execution_options(stream_results=True, yield_per=batch).execute(
                sql(query)
            )
            keys = list(result.keys())
            if not {id_key, text_key} <= set(keys):
                raise SourceError(f"the query must return the columns {id_key!r} and {text_key!r}")
            for number, row in enumerate(result, start=1):
                data = {k: _jsonable(v) for k, v in zip(keys, row, strict=True)}
                yield _record(f"query row {number}", data, id_key, text_key)
    except SQLAlchemyError as exc:
        raise SourceError(f"the query failed ({type(exc).__name__})") from None
    finally:
        engine.dispose()


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)  # dates, decimals: their text form in the metadata


def open_source(
    source: str, *, from_db: str | None = None, id_key: str = "id", text_key: str = "text"
) -> Iterator[SourceRow]:
    """The rows of ``source``: a folder, a ``.jsonl``/``.json`` file, a ``.csv`` file, or with
    ``from_db`` a SQL query."""
    if from_db is not None:
        return sql_rows(from_db, source, id_key, text_key)
    path = Path(source)
    if path.is_dir():
        return folder_rows(path)
    if not path.is_file():
        raise SourceError(f"{source}: no such file or folder")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return jsonl_rows(path, id_key, text_key)
    if suffix in (".csv", ".tsv"):
        return csv_rows(path, id_key, text_key)
    raise SourceError(f"{source}: a folder of .txt files, .jsonl or .csv, or --from-db URL")


def count_rows(source: str, *, from_db: str | None = None) -> int | None:
    """How many notes a source holds, when that is cheap to know (for the progress bar)."""
    if from_db is not None:
        return None
    path = Path(source)
    if path.is_dir():
        return sum(1 for _ in path.rglob("*.txt"))
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json") and path.is_file():
        with path.open("rb") as handle:
            return sum(1 for line in handle if line.strip())
    return None
