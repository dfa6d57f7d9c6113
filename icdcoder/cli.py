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

#: Modules that add subcommands: each has ``register(subparsers)``.
COMMAND_MODULES = (
    "icdcoder.commands.code",
    "icdcoder.commands.index",
    "icdcoder.commands.learn",
    "icdcoder.commands.eval",
    "icdcoder.commands.bus",
    "icdcoder.commands.memory",
    "icdcoder.commands.pack",
    "icdcoder.commands.settings",
    "icdcoder.commands.db",
    "icdcoder.commands.backfill",
    "icdcoder.commands.export",
    "icdcoder.commands.serve",
    "icdcoder.commands.train",
    "icdcoder.commands.user",
)


class OneLineParser(argparse.ArgumentParser):
    """argparse with the project's one-line errors (no usage block; ``--help`` has it)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog.split()[0]}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="icdcoder",
        description="Assign ICD-10-CM codes to clinical notes, with evidence spans.",
    )
    parser.add_argument("--log-level", default="WARNING", help="log level (default WARNING)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
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
