"""``icdcoder settings``: every environment variable, its default and meaning; or the values in
effect (secrets masked)."""

from __future__ import annotations

import argparse
import json

from icdcoder.commands.options import settings_from_env
from icdcoder.shared.settings import settings_table


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "settings",
        help="list the ICDCODER_* variables (the README's table), or the values in effect",
    )
    parser.add_argument(
        "--effective", action="store_true", help="the values read from this environment (JSON)"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.effective:
        print(json.dumps(settings_from_env().model_dump(mode="json"), indent=2))
    else:
        print(settings_table())
    return 0
