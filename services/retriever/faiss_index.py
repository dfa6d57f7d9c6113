"""FAISS exact inner-product search over L2-normalised vectors (cosine), on a GPU when FAISS
sees one; every GPU call is guarded and falls back to the CPU."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from icdcoder.services.retriever.core import Vectors
from icdcoder.shared.logging import get_logger

log = get_logger(__name__)


class FaissIndex:
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
