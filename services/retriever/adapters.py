"""The retriever's wiring: a pack's encoder, its catalogue index and its example memory.

On a CPU the encoder is the pack's model exported to ONNX and int8-quantised (once, into the
cache folder; no torch at run time), and the catalogue index an HNSW graph; on a machine with a
CUDA device, sentence-transformers on the GPU and a flat index on FAISS's GPUs. The index is
built once and cached (:mod:`~icdcoder.services.retriever.vector_cache`). The example memory's
vectors are cached as one ``.npy`` keyed by the examples, the model and its runtime, and searched
exactly (they are few: thousands).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from icdcoder.services.retriever.core import ExampleIndex, IndexRows, Lexical, Retriever, Vectors
from icdcoder.services.retriever.encoder import SentenceTransformerEncoder
from icdcoder.services.retriever.faiss_index import (
    ExactIndex,
    IndexKind,
    faiss_gpus,
    set_search_threads,
)
from icdcoder.services.retriever.onnx_encoder import OnnxEncoder, export, exported_folder
from icdcoder.services.retriever.query_cache import CachedEncoder
from icdcoder.services.retriever.rerank import Reranker, code_traits
from icdcoder.services.retriever.vector_cache import (
    IndexBundle,
    ModelEncoder,
    ProgressFactory,
    load_or_build_index,
    stderr_progress,
)
from icdcoder.shared.catalogue import Catalogue
from icdcoder.shared.logging import get_logger
from icdcoder.shared.memory import LoadedMemory
from icdcoder.shared.pack import OpenPack, Pack, PackError, model_fingerprint
from icdcoder.shared.settings import RetrieverConfig, Settings

EncoderKind = Literal["onnx-int8", "torch"]

log = get_logger(__name__)


def encoder_kind(config: RetrieverConfig) -> EncoderKind:
    """``auto``: torch where a CUDA device is (or is asked for), else the int8 ONNX model."""
    if config.encoder != "auto":
        return config.encoder
    if config.device == "cuda" or (config.device == "auto" and cuda_device_present()):
        return "torch"
    return "onnx-int8"


def cuda_device_present() -> bool:
    """An NVIDIA device node, checked without importing torch (which takes seconds)."""
    return Path("/dev/nvidiactl").exists() and importlib.util.find_spec("torch") is not None


def load_encoder(pack: Pack, config: RetrieverConfig, cache_dir: Path) -> ModelEncoder:
    """The pack's embedding model; refused when it is not the model the pack was built with.

    The int8 ONNX model is exported from it once, into ``cache_dir``, on first use."""
    path = pack.model_path()
    if not (path / "config.json").is_file():
        raise PackError(f"pack {pack.name}: no sentence-transformers model at {path}")
    if model_fingerprint(path) != pack.manifest.model.fingerprint:
        raise PackError(
            f"pack {pack.name}: the model at {path} is not the one the pack was built with"
        )
    set_search_threads(config.threads)
    if encoder_kind(config) == "torch":
        return SentenceTransformerEncoder(
            path, device=config.device, batch_size=config.batch_size, threads=config.threads
        )
    folder = exported_folder(cache_dir, path)
    if not (folder / "encoder.json").is_file():
        log.info("encoder_exporting", kind="onnx-int8", model=path.name)
        export(path, folder)
    return OnnxEncoder(folder, path, threads=config.threads)


class _FullPrecision:
    """The model through sentence-transformers, loaded only if the catalogue has to be embedded
    (a warm cache never imports torch)."""

    kind = "torch"

    def __init__(self, model_path: Path, config: RetrieverConfig) -> None:
        self.model_path = model_path
        self._config = config
        self._encoder: SentenceTransformerEncoder | None = None

    def _loaded(self) -> SentenceTransformerEncoder:
        if self._encoder is None:
            self._encoder = SentenceTransformerEncoder(
                self.model_path,
                device="cpu",
                batch_size=self._config.batch_size,
                threads=self._config.threads,
            )
        return self._encoder

    @property
    def dimension(self) -> int:
        return self._loaded().dimension

    def encode(self, texts: Sequence[str]) -> Vectors:
        return self._loaded().encode(texts)


def catalogue_encoder(config: RetrieverConfig, encoder: ModelEncoder) -> ModelEncoder:
    """What embeds the catalogue: the query encoder, or (``catalogue_precision`` full, the
    default) the model in float32 when queries go through the int8 one. The catalogue is
    embedded once; keeping it exact halves the quantisation error a query meets."""
    if config.catalogue_precision == "query" or encoder.kind == "torch":
        return encoder
    return _FullPrecision(encoder.model_path, config)


def index_kind(config: RetrieverConfig) -> IndexKind:
    """``auto``: flat on FAISS GPUs (HNSW has no GPU version), else HNSW."""
    if config.index != "auto":
        return config.index
    return "flat" if faiss_gpus() > 0 else "hnsw"


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
    encoder = load_encoder(pack, config, cache_dir)
    bundle = catalogue_index(pack, config, catalogue, encoder, cache_dir, progress=progress)
    bundle.index.to_gpu_if_available()
    descriptions = {code: info.description for code, info in catalogue.codes.items()}
    examples = None
    if memory is not None and memory.examples:
        examples = example_index(memory, encoder, cache_dir, config.memory_neighbours)
    return Retriever(
        CachedEncoder(encoder, config.query_cache) if config.query_cache else encoder,
        bundle.index,
        bundle.rows,
        descriptions,
        catalogue_version=catalogue.version,
        pack=pack.id,
        top_k=config.top_k,
        memory=examples,
        lexical=lexical_side(bundle, config, cache_dir),
        search_ruled_out=config.search_ruled_out,
        phrases=config.phrases,
        reranker=pack_reranker(pack) if config.rerank else None,
        traits=code_traits(catalogue),
    )


def pack_reranker(pack: Pack) -> Reranker | None:
    """The retrieval re-ranker of the pack's weights file (its ``retrieval`` section), if any."""
    try:
        section = json.loads(pack.weights_path.read_text(encoding="utf-8")).get("retrieval")
        return Reranker.from_dict(section) if section else None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise PackError(f"pack {pack.name}: unreadable retrieval re-ranker ({exc})") from None


def catalogue_index(
    pack: Pack,
    config: RetrieverConfig,
    catalogue: Catalogue,
    encoder: ModelEncoder,
    cache_dir: Path,
    *,
    progress: ProgressFactory | None = stderr_progress,
    force: bool = False,
) -> IndexBundle:
    """The catalogue's vector index of the kind the settings ask for (cached; built if not)."""
    return load_or_build_index(
        catalogue,
        catalogue_encoder(config, encoder),
        cache_dir,
        prebuilt=pack.vectors_path,
        progress=progress,
        force=force,
        kind=index_kind(config),
        ef_search=config.hnsw_ef_search,
    )


def lexical_side(bundle: IndexBundle, config: RetrieverConfig, cache_dir: Path) -> Lexical | None:
    """BM25 over the index's rows (cached), when the settings ask for it."""
    if not config.lexical:
        return None
    from icdcoder.services.retriever.lexical import LexicalIndex

    return Lexical(
        LexicalIndex.load_or_build(bundle.rows.texts, cache_dir),
        bundle.index.reconstruct,
        config.lexical_k,
    )


def runtime(config: RetrieverConfig) -> str:
    """What, besides the pack, the retrieved candidates depend on: the query encoder, the
    catalogue's precision, the index kind (HNSW with its search breadth), the lexical side,
    which spans are searched, whether a long span's phrases are too, and whether the pack's
    re-ranker may order them."""
    catalogue = "torch" if config.catalogue_precision == "full" else encoder_kind(config)
    index: str = index_kind(config)
    if index == "hnsw":
        index += f"-{config.hnsw_ef_search}"
    lexical = f"/bm25-{config.lexical_k}" if config.lexical else ""
    ruled_out = "/all-spans" if config.search_ruled_out else ""
    whole = "" if config.phrases else "/whole-spans"
    order = "" if config.rerank else "/cosine-order"
    return f"{encoder_kind(config)}/{catalogue}/{index}{lexical}{ruled_out}{whole}{order}"


def retriever_for(
    opened: OpenPack, settings: Settings, *, progress: ProgressFactory | None = None
) -> Retriever:
    """The retriever of an opened pack, with the settings' retriever section and cache (and
    negated spans searched when their codes are for review)."""
    config = settings.retriever
    if settings.negated_for_review and not config.search_ruled_out:
        config = config.model_copy(update={"search_ruled_out": True})
    return load_retriever(
        opened.pack,
        config,
        opened.catalogue,
        settings.cache_dir,
        memory=opened.memory,
        progress=progress,
    )


def example_index(
    memory: LoadedMemory, encoder: ModelEncoder, cache_dir: Path, neighbours: int
) -> ExampleIndex:
    """The memory's examples embedded (vectors cached by content, model and runtime), searched
    exactly (one matrix product: they are thousands, not tens of thousands)."""
    rows = IndexRows(
        codes=[e.code for e in memory.examples], texts=[e.text for e in memory.examples]
    )
    h = hashlib.sha256(f"{model_fingerprint(encoder.model_path)}:{encoder.kind}".encode())
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
    return ExampleIndex(ExactIndex(vectors), rows, neighbours=neighbours)
