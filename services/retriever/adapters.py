"""The retriever's wiring: a pack's encoder, its catalogue index and its example memory.

The index is built once and cached (:mod:`~icdcoder.services.retriever.vector_cache`). On a
machine where FAISS sees GPUs the index moves to them, and the encoder to CUDA when torch sees
it. The example memory's vectors are cached as one ``.npy`` keyed by the examples and the model,
and searched exactly (they are few: thousands).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from icdcoder.services.retriever.core import ExampleIndex, IndexRows, Retriever, Vectors
from icdcoder.services.retriever.encoder import SentenceTransformerEncoder
from icdcoder.services.retriever.faiss_index import FaissIndex
from icdcoder.services.retriever.vector_cache import (
    ProgressFactory,
    load_or_build_index,
    stderr_progress,
)
from icdcoder.shared.catalogue import Catalogue
from icdcoder.shared.logging import get_logger
from icdcoder.shared.memory import LoadedMemory
from icdcoder.shared.pack import OpenPack, Pack, PackError, model_fingerprint
from icdcoder.shared.settings import RetrieverConfig, Settings

log = get_logger(__name__)


def load_encoder(pack: Pack, config: RetrieverConfig) -> SentenceTransformerEncoder:
    """The pack's embedding model; refused when it is not the model the pack was built with."""
    path = pack.model_path()
    if not (path / "config.json").is_file():
        raise PackError(f"pack {pack.name}: no sentence-transformers model at {path}")
    if model_fingerprint(path) != pack.manifest.model.fingerprint:
        raise PackError(
            f"pack {pack.name}: the model at {path} is not the one the pack was built with"
        )
    return SentenceTransformerEncoder(path, device=config.device, batch_size=config.batch_size)


def load_retriever(
    pack: Pack,
    config: RetrieverConfig,
    catalogue: Catalogue,
    cache_dir: Path,
    *,
    memory: LoadedMemory | None = None,
    progress: ProgressFactory | None = stderr_progress,
) -> Retriever:
    """Model, catalogue index and memory, loaded once per process (the index built if missing)."""
    encoder = load_encoder(pack, config)
    bundle = load_or_build_index(
        catalogue, encoder, cache_dir, prebuilt=pack.vectors_path, progress=progress
    )
    bundle.index.to_gpu_if_available()
    descriptions = {code: info.description for code, info in catalogue.codes.items()}
    examples = None
    if memory is not None and memory.examples:
        examples = example_index(memory, encoder, cache_dir, config.memory_neighbours)
    return Retriever(
        encoder,
        bundle.index,
        bundle.rows,
        descriptions,
        catalogue_version=catalogue.version,
        pack=pack.id,
        top_k=config.top_k,
        memory=examples,
    )


def retriever_for(
    opened: OpenPack, settings: Settings, *, progress: ProgressFactory | None = None
) -> Retriever:
    """The retriever of an opened pack, with the settings' retriever section and cache."""
    return load_retriever(
        opened.pack,
        settings.retriever,
        opened.catalogue,
        settings.cache_dir,
        memory=opened.memory,
        progress=progress,
    )


def example_index(
    memory: LoadedMemory, encoder: SentenceTransformerEncoder, cache_dir: Path, neighbours: int
) -> ExampleIndex:
    """The memory's examples embedded (vectors cached by content and model), searched exactly."""
    rows = IndexRows(
        codes=[e.code for e in memory.examples], texts=[e.text for e in memory.examples]
    )
    h = hashlib.sha256(model_fingerprint(encoder.model_path).encode())
    for code, text in zip(rows.codes, rows.texts, strict=True):
        h.update(f"{code}\t{text}\n".encode())
    path = cache_dir / f"memory-{h.hexdigest()[:16]}.npy"
    vectors: Vectors | None = None
    if path.is_file():
        try:
            vectors = np.load(path)
        except (OSError, ValueError) as exc:
            log.warning("memory_cache_corrupt_rebuilding", error=type(exc).__name__)
    if vectors is None or vectors.shape[0] != len(rows.texts):
        vectors = encoder.encode(list(rows.texts))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, vectors)
        tmp.replace(path)
    log.info("memory_loaded", examples=len(rows.texts), dropped=len(memory.dropped_codes))
    return ExampleIndex(FaissIndex.build(vectors), rows, neighbours=neighbours)
