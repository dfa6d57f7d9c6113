"""``icdcoder worker STAGE``, ``icdcoder submit FILE...`` and ``icdcoder status``: the bus.

Everything reads the ``ICDCODER_BUS__*`` settings (Redis URL, consumer name, claim idle time,
max deliveries) and workers ``ICDCODER_HTTP__*`` from the environment; see docs/bus.md.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import re
import sys
from collections.abc import Sequence
from typing import Any

from redis.exceptions import RedisError

from icdcoder.commands.options import fail, positive_seconds, settings_from_env
from icdcoder.inputs import InputError, read_note
from icdcoder.shared.bus.admin import connect
from icdcoder.shared.bus.client import BusStatus, ResultFollower, bus_status
from icdcoder.shared.bus.client import submit_notes as publish_notes
from icdcoder.shared.errors import loggable
from icdcoder.shared.logging import configure_logging
from icdcoder.shared.messages import NOTE_ID_PATTERN, NoteIn
from icdcoder.shared.settings import BusConfig, Settings
from icdcoder.shared.streams import STAGES


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    worker = subparsers.add_parser(
        "worker",
        help="run one pipeline stage as a Redis-streams worker",
        description="Run one stage until SIGTERM. Logs: JSON lines on stdout. HTTP: "
        "/healthz/live, /healthz/ready, /metrics, /asyncapi.",
    )
    worker.add_argument(
        "stage", choices=[*STAGES, "store"], help="the stage to run (store: results into SQL)"
    )
    worker.add_argument(
        "--http-port",
        type=int,
        help="port of the HTTP routes (default ICDCODER_HTTP__PORT, 8080; 0: any free port)",
    )
    worker.add_argument(
        "--host", help="address to listen on (default ICDCODER_HTTP__HOST, 127.0.0.1)"
    )
    worker.add_argument(
        "--worker-log-level", default="INFO", help="the worker's log level (default INFO)"
    )
    worker.set_defaults(handler=run_worker)

    submit = subparsers.add_parser(
        "submit",
        help="publish notes to the bus (and wait for their codes)",
        description="Publish each note to the notes stream. With --wait, print each note's "
        "CodedNote as one JSON line as it arrives.",
    )
    submit.add_argument("files", nargs="+", metavar="FILE", help="note files; - reads stdin")
    submit.add_argument("--id", help="note id for a single FILE (default: the file's stem)")
    submit.add_argument("--wait", action="store_true", help="wait for and print the results")
    submit.add_argument(
        "--timeout", type=positive_seconds, default=600.0, help="seconds --wait waits (default 600)"
    )
    submit.set_defaults(handler=run_submit)

    status = subparsers.add_parser(
        "status",
        help="per-stage stream length, lag, pending messages and dead letters",
        description="Per stage: entries not yet committed (length), not yet delivered (lag), "
        "delivered but not acked (pending), consumers, dead letters.",
    )
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    status.set_defaults(handler=run_status)


# --- worker ---------------------------------------------------------------------------------


def store_worker(settings: Settings) -> Any:
    from icdcoder.services.store.app import StoreWorker
    from icdcoder.shared.store.migrate import open_store

    return StoreWorker(settings, lambda: open_store(settings.store))


def run_worker(args: argparse.Namespace) -> int:
    from icdcoder.shared.bus.serve import serve_worker
    from icdcoder.shared.bus.worker import StageWorker

    configure_logging(args.worker_log_level, stream=sys.stdout)
    settings = settings_from_env()
    http = settings.http.model_copy(
        update={k: v for k, v in (("port", args.http_port), ("host", args.host)) if v is not None}
    )
    if args.stage == "store":
        worker = store_worker(settings)
    else:
        spec = importlib.import_module(f"icdcoder.services.{args.stage}.app").SPEC
        worker = StageWorker(spec, settings)
    try:
        asyncio.run(serve_worker(worker, http))
    except (OSError, RedisError, RuntimeError) as exc:
        return fail(f"{args.stage} worker stopped: {loggable(exc)}", 1)
    return 0


# --- submit ---------------------------------------------------------------------------------


def run_submit(args: argparse.Namespace) -> int:
    if args.id is not None and len(args.files) != 1:
        return fail("--id names one note: give exactly one FILE with it")
    if args.id is not None and not re.match(NOTE_ID_PATTERN, args.id):
        return fail(
            f"invalid note id {args.id!r}: 1-200 letters, digits and . _ : -, "
            "starting with a letter or digit"
        )
    settings = settings_from_env()
    max_chars = settings.segmenter.max_note_chars
    try:
        notes = [read_note(path, max_chars=max_chars, note_id=args.id) for path in args.files]
    except InputError as exc:
        return fail(str(exc))
    seen: set[str] = set()
    for note in notes:
        if note.note_id in seen:
            return fail(f"two notes have the id {note.note_id!r}: rename a file or use --id")
        seen.add(note.note_id)
    try:
        return asyncio.run(_submit(notes, settings.bus, wait=args.wait, timeout_s=args.timeout))
    except RedisError as exc:
        return fail(f"Redis: {loggable(exc)}", 1)


async def _submit(
    notes: Sequence[NoteIn], config: BusConfig, *, wait: bool, timeout_s: float
) -> int:
    redis = connect(config)
    try:
        follower = ResultFollower(redis)
        if wait:
            await follower.mark()  # before publishing: no result can be missed
        message_ids = await publish_notes(redis, notes)
        if not wait:
            for note, message_id in zip(notes, message_ids, strict=True):
                print(json.dumps({"note_id": note.note_id, "message_id": message_id}))
            return 0
        waiting = {note.note_id for note in notes}
        failed = 0
        async for outcome in follower.follow(list(waiting), timeout_s):
            waiting.discard(outcome.note_id)
            if outcome.coded is not None:
                print(outcome.coded.model_dump_json(), flush=True)
            elif outcome.dead_letter is not None:
                failed += 1
                letter = outcome.dead_letter
                fail(f"note {letter.note_id}: dead-lettered by {letter.stage}: {letter.error}")
        if waiting:
            missing = ", ".join(sorted(waiting)[:10]) + (" ..." if len(waiting) > 10 else "")
            return fail(f"no result within {timeout_s:g}s for {len(waiting)} note(s): {missing}", 1)
        return 1 if failed else 0
    finally:
        await redis.aclose()


# --- status ---------------------------------------------------------------------------------


def run_status(args: argparse.Namespace) -> int:
    settings = settings_from_env()
    try:
        status = asyncio.run(_status(settings))
    except RedisError as exc:
        return fail(f"Redis: {loggable(exc)}", 1)
    print(json.dumps(status.as_dict()) if args.json else format_status(status))
    return 0


async def _status(settings: Settings) -> BusStatus:
    redis = connect(settings.bus)
    try:
        return await bus_status(redis)
    finally:
        await redis.aclose()


def format_status(status: BusStatus) -> str:
    header = ("STAGE", "STREAM", "LENGTH", "LAG", "PENDING", "CONSUMERS", "DEAD LETTERS")
    rows = [header] + [
        (
            s.stage,
            s.stream,
            str(s.length),
            "-" if s.lag is None else str(s.lag),
            str(s.pending),
            str(s.consumers),
            str(s.dead_letters),
        )
        for s in status.stages
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(
            cell.ljust(width) if i < 2 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    lines.append(f"codes: {status.codes}  dead letters: {status.dead_letters}")
    return "\n".join(lines)
