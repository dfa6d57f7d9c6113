"""Building model packs (:mod:`icdcoder.shared.pack` reads them).

A new pack starts from a base pack (the built-in one unless told otherwise) and replaces what is
given: Alphabetic Index enrichment, an example memory, verifier weights, the embedding model.
An example memory changes what the retrieval scores mean, so a pack with a memory takes the
weights fitted with one (``weights/memory.json``) unless weights are given. Files are written to
a temporary folder beside the target and renamed into place: a pack is whole or absent.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from icdcoder.shared.catalogue import Catalogue
from icdcoder.shared.index_terms import IndexTerms
from icdcoder.shared.memory import load_memory
from icdcoder.shared.pack import (
    MANIFEST,
    EnrichmentEntry,
    FileEntry,
    Manifest,
    MemoryEntry,
    ModelEntry,
    Pack,
    PackError,
    VectorsEntry,
    load_pack,
    model_fingerprint,
    sha256_of,
    write_enrichment,
)

#: Weights fitted on CodiEsp train with the train example memory (docs/memory.md).
MEMORY_WEIGHTS = Path(__file__).with_name("weights") / "memory.json"


@dataclass(frozen=True)
class PackSpec:
    """What a new pack changes from its base (None: keep the base's)."""

    name: str
    description: str = ""
    enrichment: IndexTerms | None = None
    no_enrichment: bool = False
    memory: Path | None = None
    weights: Path | None = None
    model: Path | None = None


#: Builds the catalogue's vector index into a folder; returns its cache key.
VectorBuilder = Callable[[Pack, Path], str]


def build_pack(
    out: Path,
    spec: PackSpec,
    *,
    catalogue: Catalogue,
    base: Pack | None = None,
    vectors: VectorBuilder | None = None,
) -> Pack:
    """Write the pack ``spec`` describes to ``out`` and return it, loaded and verified."""
    base = base or load_pack()
    if out.exists() and any(out.iterdir()):
        raise PackError(f"{out} exists and is not empty: choose a new folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        manifest = _write_files(tmp, spec, catalogue, base)
        (tmp / MANIFEST).write_text(manifest.model_dump_json(indent=2) + "\n")
        if vectors is not None:
            key = vectors(load_pack(tmp), tmp / "vectors")
            manifest = manifest.model_copy(
                update={"vectors": VectorsEntry(folder="vectors", key=key)}
            )
            (tmp / MANIFEST).write_text(manifest.model_dump_json(indent=2) + "\n")
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return load_pack(out)


def _write_files(root: Path, spec: PackSpec, catalogue: Catalogue, base: Pack) -> Manifest:
    provenance = {"base": base.id}
    weights_source = spec.weights or (MEMORY_WEIGHTS if spec.memory else base.weights_path)
    weights = _copy(weights_source, root / "weights.json")
    if spec.weights is not None:
        provenance["weights"] = str(spec.weights)
    elif spec.memory is not None:
        provenance["weights"] = MEMORY_WEIGHTS.name
    else:  # the base's weights, and where they came from
        provenance["weights"] = base.manifest.provenance.get("weights", base.weights_path.name)

    enrichment = None
    if spec.enrichment is not None:
        write_enrichment(root / "enrichment.tsv.gz", spec.enrichment.texts)
        enrichment = EnrichmentEntry(
            file="enrichment.tsv.gz",
            sha256=sha256_of(root / "enrichment.tsv.gz"),
            source=spec.enrichment.source,
            texts=sum(len(t) for t in spec.enrichment.texts.values()),
            codes=len(spec.enrichment.texts),
            mapped=spec.enrichment.mapped,
            dropped=spec.enrichment.dropped,
            followed=spec.enrichment.followed,
        )
    elif base.manifest.enrichment is not None and not spec.no_enrichment:
        shutil.copyfile(base.root / base.manifest.enrichment.file, root / "enrichment.tsv.gz")
        enrichment = base.manifest.enrichment.model_copy(update={"file": "enrichment.tsv.gz"})

    memory = None
    if spec.memory is not None:
        loaded = load_memory(spec.memory, catalogue)
        entry = _copy(spec.memory, root / "memory.jsonl")
        memory = MemoryEntry(
            file=entry.file,
            sha256=entry.sha256,
            examples=len(loaded.examples),
            notes=len(loaded.notes),
            source=spec.memory.name,
        )

    if spec.model is not None:
        shutil.copytree(spec.model, root / "model")
        model = ModelEntry(folder="model", fingerprint=model_fingerprint(root / "model"))
    elif base.manifest.model.folder is not None:
        shutil.copytree(base.model_path(), root / "model")
        model = base.manifest.model
    else:
        model = base.manifest.model

    return Manifest(
        name=spec.name,
        description=spec.description,
        created=datetime.now(UTC).replace(microsecond=0).isoformat(),
        catalogue=catalogue.version,
        model=model,
        weights=weights,
        enrichment=enrichment,
        memory=memory,
        provenance=provenance,
    )


def _copy(source: Path, target: Path) -> FileEntry:
    if not source.is_file():
        raise PackError(f"not found: {source}")
    shutil.copyfile(source, target)
    return FileEntry(file=target.name, sha256=sha256_of(target))
