"""``icdcoder index build``: embed the pack's catalogue texts and cache the FAISS index (and
the BM25 index over the same texts when lexical retrieval is on)."""

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
    from icdcoder.services.retriever.adapters import (
        catalogue_encoder,
        catalogue_index,
        load_encoder,
    )
    from icdcoder.shared.pack import open_pack

    settings = load_settings(args)
    started = time.perf_counter()
    opened = open_pack(settings.pack, cache_dir=settings.cache_dir, index=settings.alphabetic_index)
    encoder = load_encoder(opened.pack, settings.retriever, settings.cache_dir)
    bundle = catalogue_index(
        opened.pack,
        settings.retriever,
        opened.catalogue,
        encoder,
        settings.cache_dir,
        force=args.force,
    )
    size = sum(f.stat().st_size for f in bundle.directory.iterdir())
    verb = "built" if bundle.built else "reused"
    if settings.retriever.lexical:  # cached beside it, so the first note does not wait for it
        from icdcoder.services.retriever.lexical import LexicalIndex

        LexicalIndex.load_or_build(bundle.rows.texts, settings.cache_dir)
    print(
        f"{verb} {bundle.index.kind} index of pack {opened.pack.id}: "
        f"{bundle.index.size:,} texts, {size / 2**20:.1f} MiB at {bundle.directory} "
        f"({time.perf_counter() - started:.1f} s; catalogue embedded by "
        f"{catalogue_encoder(settings.retriever, encoder).kind}, queries by {encoder.kind})"
    )
    return 0
