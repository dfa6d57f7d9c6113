"""What the subcommands share: pipeline options (code, eval, index build) and error lines."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from icdcoder.shared.settings import RetrieverSettings, VerifierSettings


def add_pipeline_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("pipeline (defaults from ICDCODER_* environment variables)")
    group.add_argument(
        "--index-csv",
        type=Path,
        help="ICD-10-CM Alphabetic Index CSV whose term paths enrich retrieval",
    )
    group.add_argument("--no-index", action="store_true", help="no alphabetic-index enrichment")
    group.add_argument(
        "--memory",
        type=Path,
        help="example memory (JSON lines of confirmed span -> code examples) searched with the "
        "catalogue; build one with 'icdcoder memory codiesp'",
    )
    group.add_argument("--no-memory", action="store_true", help="no example memory")
    group.add_argument("--model", type=Path, help="sentence-transformers model folder")
    group.add_argument("--top-k", type=int, help="candidates per span (default 20)")
    group.add_argument("--cache-dir", type=Path, help="where the FAISS index is cached")
    group.add_argument("--verifier", choices=["similarity", "vllm"], help="verifier backend")


def retriever_settings(args: argparse.Namespace) -> RetrieverSettings:
    overrides: dict[str, Any] = {}
    if args.index_csv is not None:
        overrides["index_csv"] = args.index_csv
    if args.model is not None:
        overrides["model_path"] = args.model
    if getattr(args, "memory", None) is not None:
        overrides["memory_path"] = args.memory
    if args.top_k is not None:
        overrides["top_k"] = args.top_k
    if args.cache_dir is not None:
        overrides["cache_dir"] = args.cache_dir
    settings = RetrieverSettings(**overrides)
    if args.no_index:
        settings = settings.model_copy(update={"index_csv": None})
    if getattr(args, "no_memory", False):
        settings = settings.model_copy(update={"memory_path": None})
    return settings


def verifier_settings(args: argparse.Namespace) -> VerifierSettings:
    """Verifier settings agreeing with the retriever's on the example memory."""
    settings = VerifierSettings().model_copy(
        update={"memory_path": retriever_settings(args).memory_path}
    )
    if args.verifier is not None:
        settings = settings.model_copy(update={"backend": args.verifier})
    return settings


def check_paths(settings: RetrieverSettings) -> str | None:
    """A one-line problem with the configured files, or None."""
    if settings.index_csv is not None and not settings.index_csv.is_file():
        return f"alphabetic index not found: {settings.index_csv}"
    if settings.memory_path is not None:
        from icdcoder.shared.memory import ExampleMemoryError, read_examples

        try:
            read_examples(settings.memory_path)  # small: fail before loading any model
        except ExampleMemoryError as exc:
            return str(exc)
    if settings.model_path is not None and not (settings.model_path / "config.json").is_file():
        return f"no sentence-transformers model at {settings.model_path}"
    return None


def fail(message: str, status: int = 2) -> int:
    """Print the one-line error every command uses for bad input; return the exit status."""
    print(f"icdcoder: error: {message}", file=sys.stderr)
    return status
