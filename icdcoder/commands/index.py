"""``icdcoder index build``: embed the pack's catalogue texts and cache the FAISS index."""

from __future__ import annotations

import argparse
import time

from icdcoder.commands.options import add_pipeline_options, load_settings


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("index", help="manage the retrieval index")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    build = actions.add_parser("build", help="build (or reuse) the cached FAISS index")
    build.add_argument("--force", action="store_true", help="rebuild even if a cache exists")
    add_pipeline_options(build)
    build.set_defaults(handler=run_build)


def run_build(args: argparse.Namespace) -> int:
    from icdcoder.services.retriever.adapters import load_encoder
    from icdcoder.services.retriever.vector_cache import load_or_build_index
    from icdcoder.shared.pack import open_pack

    settings = load_settings(args)
    started = time.perf_counter()
    opened = open_pack(settings.pack)
    encoder = load_encoder(opened.pack, settings.retriever)
    bundle = load_or_build_index(
        opened.catalogue,
        encoder,
        settings.cache_dir,
        prebuilt=opened.pack.vectors_path,
        force=args.force,
    )
    size = sum(f.stat().st_size for f in bundle.directory.iterdir())
    verb = "built" if bundle.built else "reused"
    print(
        f"{verb} index of pack {opened.pack.id}: {bundle.index.size:,} texts, "
        f"{size / 2**20:.1f} MiB at {bundle.directory} "
        f"({time.perf_counter() - started:.1f} s, encoder on {encoder.device})"
    )
    return 0
