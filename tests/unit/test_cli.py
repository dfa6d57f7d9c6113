"""The command line's parser: every command registered, and only the named one's module loaded."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from icdcoder.cli import COMMANDS, build_parser, command_named


def choices(parser: argparse.ArgumentParser) -> set[str]:
    (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return set(sub.choices)


def test_the_full_parser_has_exactly_the_listed_commands() -> None:
    assert choices(build_parser()) == set(COMMANDS)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_each_command_comes_from_its_listed_module(command: str) -> None:
    assert command in choices(build_parser(command))


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["code", "note.txt"], "code"),
        (["--log-level", "INFO", "backfill", "notes/"], "backfill"),
        (["--log-level=DEBUG", "eval", "--split", "dev"], "eval"),
        (["--version"], None),
        ([], None),
    ],
)
def test_command_named(argv: list[str], command: str | None) -> None:
    assert command_named(argv) == command


def test_an_unknown_command_is_refused_with_the_full_list(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from icdcoder.cli import main

    with pytest.raises(SystemExit) as stopped:
        main(["bogus"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'bogus'" in err
    assert all(f"'{command}'" in err for command in COMMANDS)


def test_parsing_code_leaves_the_store_and_the_bus_unimported() -> None:
    script = (
        "import sys; from icdcoder.cli import build_parser, command_named; "
        "build_parser(command_named(['code', 'x.txt'])).parse_args(['code', 'x.txt']); "
        "print(sorted(m for m in ('sqlalchemy', 'faststream', 'sklearn') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
