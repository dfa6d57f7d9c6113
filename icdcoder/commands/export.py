"""``icdcoder export``: the store's results as JSON Lines, CSV, a CodiEsp run file, or FHIR.

- ``jsonl``: one CodedNote per line;
- ``csv``: one row per code (note id, content hash, rank, code, description, decision,
  confidence, evidence offsets, pack), UTF-8 with a byte-order mark and CRLF line ends so a
  spreadsheet opens it cleanly; a cell that a spreadsheet would read as a formula is quoted;
- ``codiesp``: ``id<TAB>code`` lines, each note's codes in rank order (CodiEsp-D run file);
- ``fhir``: one FHIR R4 Bundle of Condition resources per line (NDJSON), as the HTTP API
  serves them.

Results are streamed from the store, never all in memory.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from icdcoder.commands.options import fail, load_settings
from icdcoder.shared.store.repository import StoredResult

FORMATS = ("jsonl", "csv", "codiesp", "fhir")
CSV_COLUMNS = (
    "note_id",
    "content_hash",
    "rank",
    "code",
    "description",
    "decision",
    "confidence",
    "evidence",
    "pack",
)
#: A cell starting with one of these is a formula to a spreadsheet.
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("export", help="export stored results (JSONL, CSV, FHIR...)")
    parser.add_argument("--store", help="store URL (default ICDCODER_STORE__URL)")
    parser.add_argument("--format", choices=FORMATS, default="jsonl")
    parser.add_argument("--since", help="results stored at or after this ISO date/time")
    parser.add_argument("--pack", help="only results of this pack id")
    parser.add_argument("--out", type=Path, help="file to write (default stdout)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from icdcoder.shared.store.migrate import open_store

    since = None
    if args.since:
        try:
            since = datetime.fromisoformat(args.since)
        except ValueError:
            return fail(f"--since: not an ISO date or date-time: {args.since!r}")
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
    store = open_store(load_settings(args).store, auto_create=False)
    results = store.iter_results(since=since, pack=args.pack)
    if args.out is None:
        return write(args.format, results, sys.stdout)
    with args.out.open(
        "w", encoding="utf-8-sig" if args.format == "csv" else "utf-8", newline=""
    ) as out:
        return write(args.format, results, out)


def write(fmt: str, results: Iterable[StoredResult], out: TextIO) -> int:
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(CSV_COLUMNS)
    for stored in results:
        coded = stored.coded
        if coded is None:
            continue
        if fmt == "jsonl":
            out.write(coded.model_dump_json() + "\n")
        elif fmt == "codiesp":
            for gold_form in dict.fromkeys(c.code.lower() for c in coded.codes):
                out.write(f"{coded.note_id}\t{gold_form}\n")
        elif fmt == "fhir":
            from icdcoder.shared.fhir import bundle

            when = stored.note.updated_at
            resource = bundle(coded, stored.note.metadata, when=when)
            out.write(json.dumps(resource.model_dump(mode="json", exclude_none=True)) + "\n")
        else:
            for rank, code in enumerate(coded.codes, start=1):
                evidence = ";".join(f"{e.start}-{e.end}" for e in code.evidence)
                row = (
                    coded.note_id,
                    coded.content_hash,
                    rank,
                    code.code,
                    code.description,
                    code.decision,
                    f"{code.confidence:.4f}",
                    evidence,
                    coded.pack,
                )
                writer.writerow([_cell(v) for v in row])
    return 0


def _cell(value: object) -> object:
    if isinstance(value, str) and value.startswith(_FORMULA):
        return "'" + value
    return value
