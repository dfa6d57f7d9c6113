"""The ``icdcoder`` command: parse arguments, call the pipeline, print results.

Subcommands live in small modules that each add themselves to the parser (``register``); each
handler returns the exit code. Bad input ends with one line on stderr and exit 2, never a
traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from icdcoder import __version__
from icdcoder.commands.options import fail
from icdcoder.shared.logging import PublicError, configure_logging

#: Each subcommand and the module that adds it to the parser (``register(subparsers)``).
COMMANDS = {
    "code": "icdcoder.commands.code",
    "index": "icdcoder.commands.index",
    "learn": "icdcoder.commands.learn",
    "eval": "icdcoder.commands.eval",
    "worker": "icdcoder.commands.bus",
    "submit": "icdcoder.commands.bus",
    "status": "icdcoder.commands.bus",
    "memory": "icdcoder.commands.memory",
    "pack": "icdcoder.commands.pack",
    "settings": "icdcoder.commands.settings",
    "db": "icdcoder.commands.db",
    "backfill": "icdcoder.commands.backfill",
    "export": "icdcoder.commands.export",
    "serve": "icdcoder.commands.serve",
    "api-key": "icdcoder.commands.serve",
    "train": "icdcoder.commands.train",
    "user": "icdcoder.commands.user",
}


class OneLineParser(argparse.ArgumentParser):
    """argparse with the project's one-line errors (no usage block; ``--help`` has it)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog.split()[0]}: error: {message} (see --help)\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser with every subcommand, or with ``command``'s module only: a command then
    imports only what it uses (``icdcoder code`` starts without SQLAlchemy or FastStream)."""
    parser = OneLineParser(
        prog="icdcoder",
        description="Assign ICD-10-CM codes to clinical notes, with evidence spans.",
    )
    parser.add_argument("--log-level", default="WARNING", help="log level (default WARNING)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    modules = [COMMANDS[command]] if command in COMMANDS else list(dict.fromkeys(COMMANDS.values()))
    for module in modules:
        importlib.import_module(module).register(subparsers)
    return parser


def command_named(argv: Sequence[str]) -> str | None:
    """The subcommand ``argv`` names (its first word after the global options), if any."""
    words = iter(argv)
    for word in words:
        if word == "--log-level":
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(command_named(argv))
    args = parser.parse_args(argv)
    configure_logging(args.log_level, stream=sys.stderr)
    try:
        code: int = args.handler(args)
    except PublicError as exc:  # bad input, a setting, an unusable pack or data file
        return fail(str(exc))
    except KeyboardInterrupt:
        print("icdcoder: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `icdcoder ... | head`: the reader left, which is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return code


if __name__ == "__main__":
    sys.exit(main())
