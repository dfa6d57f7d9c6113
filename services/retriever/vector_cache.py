"""The catalogue's vector index, built once and kept: in a pack's ``vectors/`` folder, else in
the cache folder.

An index is stored in a folder named by a key over what determines its content: catalogue
version, enrichment, embedding model and the texts themselves. A changed key builds a new index;
a corrupt cache is rebuilt with a warning; a write goes to a temporary folder that is renamed
into place, so a crash never leaves a half-written index.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from icdcoder.services.retriever.core import IndexRows, Vectors
from icdcoder.services.retriever.faiss_index import EF_SEARCH, FaissIndex, IndexKind
from icdcoder.shared.catalogue import Catalogue, RetrievalText
from icdcoder.shared.logging import get_logger
from icdcoder.shared.pack import model_fingerprint

log = get_logger(__name__)

INDEX_FORMAT = 2
ProgressFactory = Callable[[int, str], Any]


class ModelEncoder(Protocol):
    model_path: Path
    #: The encoder's runtime ("torch", "onnx-int8"): their vectors differ slightly.
    kind: str

    @property
    def dimension(self) -> int: ...

    def encode(self, texts: Sequence[str]) -> Vectors: ...


@dataclass(frozen=True)
class CacheKey:
    catalogue_version: str
    with_index: bool
    model: str
    encoder: str
    index: str
    rows_sha: str

    @property
    def digest(self) -> str:
        blob = json.dumps([INDEX_FORMAT, *self.__dict__.values()], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


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


def _rows_sha(rows: Sequence[RetrievalText]) -> str:
    h = hashlib.sha256()
    for row in rows:
        h.update(f"{row.code}\t{row.text}\n".encode())
    return h.hexdigest()[:16]


def index_key(
    catalogue: Catalogue, encoder: ModelEncoder, kind: IndexKind = "flat"
) -> tuple[CacheKey, list[RetrievalText]]:
    """The key of the catalogue's index for this encoder and index kind, and its texts."""
    with_index = bool(catalogue.index_terms)
    texts = catalogue.retrieval_texts(with_index=with_index)
    key = CacheKey(
        catalogue_version=catalogue.version,
        with_index=with_index,
        model=model_fingerprint(encoder.model_path),
        encoder=encoder.kind,
        index=kind,
        rows_sha=_rows_sha(texts),
    )
    return key, texts


def load_or_build_index(
    catalogue: Catalogue,
    encoder: ModelEncoder,
    cache_dir: Path,
    *,
    prebuilt: Path | None = None,
    progress: ProgressFactory | None = stderr_progress,
    force: bool = False,
    kind: IndexKind = "flat",
    ef_search: int = EF_SEARCH,
) -> IndexBundle:
    """The index from ``prebuilt`` (a pack's folder) when its key matches, else from the cache
    folder, else built (and cached)."""
    key, texts = index_key(catalogue, encoder, kind)
    # each text stands for the code a coder would assign from it (a category's: its
    # unspecified leaf); the index itself is keyed by the catalogue's own rows
    assignable = {code: catalogue.assignable(code) for code in {r.code for r in texts}}
    rows = IndexRows(codes=[assignable[r.code] for r in texts], texts=[r.text for r in texts])
    directory = cache_dir / f"index-{key.digest}"
    for candidate in ([prebuilt] if prebuilt is not None else []) + [directory]:
        if force or not candidate.exists():
            continue
        try:
            index = _read_cached(candidate, key, len(texts), ef_search)
            return IndexBundle(index=index, rows=rows, directory=candidate, built=False)
        except Exception as exc:
            log.warning("index_cache_unusable", directory=str(candidate), error=type(exc).__name__)
    index = build_index(texts, encoder, progress, kind=kind, ef_search=ef_search)
    write_index(directory, index, key)
    return IndexBundle(index=index, rows=rows, directory=directory, built=True)


def _read_cached(directory: Path, key: CacheKey, expected_rows: int, ef_search: int) -> FaissIndex:
    meta = json.loads((directory / "meta.json").read_text())
    if meta.get("key") != key.__dict__ or meta.get("format") != INDEX_FORMAT:
        raise ValueError("cache metadata does not match its key")
    index = FaissIndex.read(directory / "index.faiss", ef_search=ef_search)
    if index.size != expected_rows or index.size != meta.get("rows"):
        raise ValueError(f"cache holds {index.size} rows, expected {expected_rows}")
    return index


def build_index(
    texts: Sequence[RetrievalText],
    encoder: ModelEncoder,
    progress: ProgressFactory | None,
    *,
    kind: IndexKind = "flat",
    ef_search: int = EF_SEARCH,
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
    started = time.perf_counter()
    index = FaissIndex.build(vectors, kind, ef_search=ef_search)
    log.info(
        "index_built", kind=kind, rows=len(texts), seconds=round(time.perf_counter() - started, 1)
    )
    return index


def write_index(directory: Path, index: FaissIndex, key: CacheKey) -> None:
    """Write to a temporary folder, then rename: a crash never leaves a half-written index."""
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
