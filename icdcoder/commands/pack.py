"""``icdcoder pack build|info``: model packs (:mod:`icdcoder.shared.pack`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from icdcoder.commands.options import load_settings
from icdcoder.packs import VectorBuilder
from icdcoder.shared.pack import Pack
from icdcoder.shared.settings import RetrieverConfig


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "pack", help="build or describe a model pack (model, enrichment, memory, weights)"
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    build = actions.add_parser(
        "build",
        help="write a new pack from a base pack and what replaces its parts",
        description="A pack holds what must agree across stages: embedding model, enrichment "
        "texts, example memory, verifier weights, catalogue version. Start from --from (the "
        "built-in pack by default) and replace parts. With --memory and no --weights, the "
        "weights fitted with a memory are used.",
    )
    build.add_argument("--out", type=Path, required=True, help="new pack folder")
    build.add_argument("--name", required=True, help="pack name (lower case, digits, . _ -)")
    build.add_argument("--description", default="", help="one line on what the pack is for")
    build.add_argument("--from", dest="base", type=Path, help="base pack (default: built in)")
    enrich = build.add_mutually_exclusive_group()
    enrich.add_argument(
        "--index",
        "--index-csv",
        dest="index",
        type=Path,
        action="append",
        help="ICD-10-CM Alphabetic Index file, CMS XML or flattened CSV, the index or its "
        "neoplasm/drug/external-cause tables (repeat for several; replaces the base's)",
    )
    enrich.add_argument("--no-enrichment", action="store_true", help="drop the base's")
    build.add_argument("--memory", type=Path, help="example memory (JSON lines)")
    build.add_argument("--weights", type=Path, help="verifier weights (icdcoder train writes)")
    build.add_argument("--model", type=Path, help="sentence-transformers folder to copy in")
    build.add_argument(
        "--vectors", action="store_true", help="embed the catalogue into the pack now (minutes)"
    )
    build.set_defaults(handler=run_build)

    info = actions.add_parser("info", help="describe a pack (default: the configured one)")
    info.add_argument("pack", nargs="?", type=Path, help="pack folder")
    info.add_argument("--json", action="store_true", help="print the manifest as JSON")
    info.set_defaults(handler=run_info)


def run_build(args: argparse.Namespace) -> int:
    from icdcoder.packs import PackSpec, build_pack
    from icdcoder.shared.catalogue import load_catalogue
    from icdcoder.shared.index_terms import read_index
    from icdcoder.shared.pack import load_pack

    settings = load_settings(args)
    base = load_pack(args.base)
    catalogue = load_catalogue(cache_dir=settings.cache_dir)
    enrichment = read_index(args.index, catalogue) if args.index else None
    spec = PackSpec(
        name=args.name,
        description=args.description,
        enrichment=enrichment,
        no_enrichment=args.no_enrichment,
        memory=args.memory,
        weights=args.weights,
        model=args.model,
    )
    vectors = _vector_builder(settings.retriever, settings.cache_dir) if args.vectors else None
    pack = build_pack(args.out, spec, catalogue=catalogue, base=base, vectors=vectors)
    print(describe(pack))
    return 0


def _vector_builder(config: RetrieverConfig, cache_dir: Path) -> VectorBuilder:
    """Embeds a new pack's catalogue texts into its ``vectors/`` folder (the encoder and index
    kinds the settings choose on this machine)."""
    from icdcoder.services.retriever.adapters import catalogue_encoder, index_kind, load_encoder
    from icdcoder.services.retriever.vector_cache import (
        build_index,
        index_key,
        stderr_progress,
        write_index,
    )
    from icdcoder.shared.catalogue import load_catalogue

    def build(pack: Pack, folder: Path) -> str:
        catalogue = load_catalogue(pack.enrichment, cache_dir=cache_dir)
        encoder = catalogue_encoder(config, load_encoder(pack, config, cache_dir))
        kind = index_kind(config)
        key, texts = index_key(catalogue, encoder, kind)
        index = build_index(texts, encoder, stderr_progress, kind=kind)
        write_index(folder, index, key)
        return key.digest

    return build


def run_info(args: argparse.Namespace) -> int:
    from icdcoder.shared.pack import load_pack

    root = args.pack if args.pack is not None else load_settings(args).pack
    pack = load_pack(root)
    if args.json:
        print(json.dumps({"id": pack.id, **pack.manifest.model_dump()}, indent=2))
    else:
        print(describe(pack))
    return 0


def describe(pack: Pack) -> str:
    """A few lines on what the pack holds."""
    m = pack.manifest
    model = m.model.package or m.model.folder or "?"
    lines = [
        f"pack {pack.id}  ({pack.root})",
        f"  {m.description}" if m.description else "",
        f"  catalogue   {m.catalogue}",
        f"  model       {model} ({m.model.fingerprint})",
        f"  weights     {m.weights.file} ({m.weights.sha256[:12]})",
        "  enrichment  "
        + (
            f"{m.enrichment.texts:,} texts for {m.enrichment.codes:,} codes from "
            f"{m.enrichment.source} ({m.enrichment.mapped:,} mapped, {m.enrichment.dropped:,} "
            f"dropped, {m.enrichment.followed:,} by cross-reference)"
            if m.enrichment
            else "none"
        ),
        "  memory      "
        + (
            f"{m.memory.examples:,} examples, {m.memory.notes:,} coded notes ({m.memory.source})"
            if m.memory
            else "none"
        ),
        f"  vectors     {'prebuilt' if m.vectors else 'built on first use, cached'}",
        f"  created     {m.created}",
    ]
    return "\n".join(line for line in lines if line)
