"""FAISS inner-product search over L2-normalised vectors (cosine).

Two kinds: ``flat`` (exact) and ``hnsw`` (a graph, approximate: on the built-in catalogue's
139,515 texts, dev span queries find 90% of the flat index's top 80 at ``efSearch`` 128, 95%
at 256, in a quarter and a half of the flat search's time; the retriever's BM25 rows and exact
rescoring make up the rest: docs/throughput.md). A flat index moves to the GPUs when FAISS sees
any; every GPU call is guarded and falls back to the CPU. :class:`ExactIndex` is the exact
search as one matrix product, for small sets (the example memory): FAISS's flat search goes
through its bundled BLAS, which is slow on some CPUs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from icdcoder.services.retriever.core import Vectors
from icdcoder.shared.logging import get_logger

log = get_logger(__name__)

IndexKind = Literal["flat", "hnsw"]
#: HNSW graph degree and construction breadth (FAISS's defaults are 32 and 40).
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
#: HNSW search breadth (``ICDCODER_RETRIEVER__HNSW_EF_SEARCH``).
EF_SEARCH = 128


def faiss_gpus() -> int:
    """How many GPUs FAISS sees (0 for a CPU build or a broken CUDA install)."""
    try:
        import faiss

        return int(faiss.get_num_gpus()) if hasattr(faiss, "get_num_gpus") else 0
    except Exception:
        return 0


def set_search_threads(threads: int) -> None:
    """FAISS's OpenMP threads (0 leaves OpenMP's default: every CPU it sees)."""
    if threads > 0:
        import faiss

        faiss.omp_set_num_threads(threads)


class FaissIndex:
    def __init__(self, index: Any, *, ef_search: int = EF_SEARCH) -> None:
        self._index = index
        #: The index on the CPU, kept when a copy moves to the GPUs (row vectors read here).
        self._cpu = index
        self.on_gpu = False
        hnsw = getattr(index, "hnsw", None)
        if hnsw is not None:
            hnsw.efSearch = ef_search

    @property
    def kind(self) -> IndexKind:
        return "hnsw" if hasattr(self._index, "hnsw") else "flat"

    @classmethod
    def build(
        cls, vectors: Vectors, kind: IndexKind = "flat", *, ef_search: int = EF_SEARCH
    ) -> FaissIndex:
        import faiss

        dim = vectors.shape[1]
        index: Any
        if kind == "hnsw":
            index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        else:
            index = faiss.IndexFlatIP(dim)
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        return cls(index, ef_search=ef_search)

    @classmethod
    def read(cls, path: Path, *, ef_search: int = EF_SEARCH) -> FaissIndex:
        import faiss

        return cls(faiss.read_index(str(path)), ef_search=ef_search)

    def write(self, path: Path) -> None:
        import faiss

        index = faiss.index_gpu_to_cpu(self._index) if self.on_gpu else self._index
        faiss.write_index(index, str(path))

    @property
    def size(self) -> int:
        return int(self._index.ntotal)

    def to_gpu_if_available(self) -> None:
        if self.kind != "flat" or faiss_gpus() == 0:
            return
        try:
            import faiss

            self._index = faiss.index_cpu_to_all_gpus(self._index)
            self.on_gpu = True
        except Exception as exc:  # no usable GPU: stay on the CPU
            log.warning("faiss_gpu_unavailable", error=type(exc).__name__)

    def reconstruct(self, ids: Sequence[int]) -> Vectors:
        """The stored vectors of rows ``ids`` (flat and HNSW-flat keep them exactly)."""
        rows = np.asarray(ids, dtype=np.int64)
        return np.asarray(self._cpu.reconstruct_batch(rows), dtype=np.float32)

    def search(self, queries: Vectors, k: int) -> tuple[Vectors, npt.NDArray[np.int64]]:
        k = min(k, self.size)
        scores, ids = self._index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        return scores.astype(np.float32), ids.astype(np.int64)


class ExactIndex:
    """Exact inner-product search as one matrix product and a partial sort (numpy's BLAS)."""

    def __init__(self, vectors: Vectors) -> None:
        self._vectors = np.ascontiguousarray(vectors, dtype=np.float32)

    @property
    def size(self) -> int:
        return int(self._vectors.shape[0])

    def search(self, queries: Vectors, k: int) -> tuple[Vectors, npt.NDArray[np.int64]]:
        k = min(k, self.size)
        if k == 0 or len(queries) == 0:
            return (
                np.zeros((len(queries), k), dtype=np.float32),
                np.full((len(queries), k), -1, dtype=np.int64),
            )
        scores = np.asarray(queries, dtype=np.float32) @ self._vectors.T
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < self.size else None
        if top is None:
            top = np.tile(np.arange(self.size), (len(queries), 1))
        top_scores = np.take_along_axis(scores, top, axis=1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        return (
            np.take_along_axis(top_scores, order, axis=1).astype(np.float32),
            np.take_along_axis(top, order, axis=1).astype(np.int64),
        )
