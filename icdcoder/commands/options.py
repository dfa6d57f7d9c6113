"""What the subcommands share: the settings read at the edge, pipeline options, error lines."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from pydantic import SecretStr, ValidationError

from icdcoder.shared.errors import describe_validation
from icdcoder.shared.logging import PublicError
from icdcoder.shared.settings import ENV_PREFIX, NESTED, Settings


class UsageError(PublicError):
    """Bad input on the command line or in the environment: one line, exit status 2."""


def add_pipeline_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("pipeline (defaults from ICDCODER_* environment variables)")
    group.add_argument(
        "--pack", type=Path, help="model pack folder (default ICDCODER_PACK, else built in)"
    )
    group.add_argument("--top-k", type=positive_int, help="candidates per span (default 20)")
    group.add_argument("--cache-dir", type=Path, help="where vector indexes are cached")
    group.add_argument(
        "--no-index",
        action="store_true",
        help="leave the pack's Alphabetic Index term paths out (ICDCODER_ALPHABETIC_INDEX)",
    )
    group.add_argument("--verifier", choices=["similarity", "vllm"], help="verifier backend")


def settings_from_env() -> Settings:
    """``Settings()``, a malformed variable turned into a :class:`UsageError` naming it."""
    try:
        return Settings()
    except ValidationError as exc:
        raise UsageError(f"invalid environment: {settings_problem(exc)}") from None


def settings_problem(exc: ValidationError) -> str:
    """A settings error with each field named as its environment variable."""
    problems = []
    for err in exc.errors(include_url=False, include_input=False, include_context=False):
        variable = ENV_PREFIX + NESTED.join(str(part) for part in err["loc"]).upper()
        problems.append(f"{variable}: {err['msg']}")
    return "; ".join(problems) or describe_validation(exc)


def load_settings(args: argparse.Namespace) -> Settings:
    """The environment's settings with this command line's pipeline options applied."""
    settings = settings_from_env()
    update: dict[str, Any] = {}
    if getattr(args, "pack", None) is not None:
        update["pack"] = args.pack
    if getattr(args, "cache_dir", None) is not None:
        update["cache_dir"] = args.cache_dir
    if getattr(args, "no_index", False):
        update["alphabetic_index"] = False
    if getattr(args, "top_k", None) is not None:
        update["retriever"] = settings.retriever.model_copy(update={"top_k": args.top_k})
    if getattr(args, "verifier", None) is not None:
        update["verifier"] = settings.verifier.model_copy(update={"backend": args.verifier})
    if getattr(args, "store", None) is not None:
        store = settings.store.model_copy(update={"url": SecretStr(args.store)})
        if getattr(args, "no_text", False):
            store = store.model_copy(update={"keep_text": False})
        update["store"] = store
    return settings.with_section(**update) if update else settings


def positive_int(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {raw!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_seconds(raw: str) -> float:
    """A finite number of seconds above 0 (``nan``, ``inf`` and negatives refused)."""
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {raw!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number above 0, got {raw!r}")
    return value


def fail(message: str, status: int = 2) -> int:
    """Print the one-line error every command uses for bad input; return the exit status."""
    print(f"icdcoder: error: {message}", file=sys.stderr)
    return status
