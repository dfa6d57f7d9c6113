"""The sentence-transformers encoder: local model folders only, never a download."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from icdcoder.services.retriever.core import Vectors


def torch_device(wanted: str) -> str:
    """``auto``: CUDA when torch sees it, else the CPU (a broken CUDA install never stops a
    CPU run)."""
    if wanted != "auto":
        return wanted
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except Exception:
        return "cpu"


class SentenceTransformerEncoder:
    """Encodes texts with a local sentence-transformers model (L2-normalised float32)."""

    kind = "torch"

    def __init__(
        self, model_path: Path, *, device: str = "auto", batch_size: int = 128, threads: int = 0
    ) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # no "Loading weights" bars
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        import torch
        from sentence_transformers import SentenceTransformer

        if threads > 0:
            torch.set_num_threads(threads)

        if not (model_path / "config.json").is_file():
            raise FileNotFoundError(f"no sentence-transformers model at {model_path}")
        self.device = torch_device(device)
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
