"""``icdcoder code FILE...``: code notes in one process (segmenter -> ... -> aggregator)."""

from __future__ import annotations

import argparse
import asyncio

from icdcoder.commands.options import add_pipeline_options, fail, load_settings
from icdcoder.inputs import InputError, read_note
from icdcoder.render import table
from icdcoder.shared.messages import NoteIn
from icdcoder.shared.settings import Settings


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "code",
        help="code notes in one process and print codes with evidence",
        description="Code clinical notes in one process. JSON: one CodedNote per line.",
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="note files; - reads stdin")
    parser.add_argument("--format", choices=["json", "table"], default="json")
    parser.add_argument(
        "--show-review",
        type=int,
        metavar="N",
        help="table: review suggestions shown beside the accepted codes "
        "(default ICDCODER_AGGREGATOR__SHOWN_REVIEW; -1: all)",
    )
    add_pipeline_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    try:
        notes = [
            read_note(path, max_chars=settings.segmenter.max_note_chars) for path in args.files
        ]
    except InputError as exc:
        return fail(str(exc))
    shown = settings.aggregator.shown_review if args.show_review is None else args.show_review
    return asyncio.run(_code(notes, args.format, settings, None if shown < 0 else shown))


async def _code(notes: list[NoteIn], output: str, settings: Settings, shown: int | None) -> int:
    from icdcoder.bootstrap import build_pipeline

    pipeline = build_pipeline(settings)
    for note in notes:
        coded = await pipeline.code(note)
        if output == "table":
            print(table(coded, shown), end="\n\n")
        else:
            print(coded.model_dump_json())
    return 0
