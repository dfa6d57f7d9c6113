"""A corpus retrieved with a pack, as the verifier would see it, cached between fits.

Retrieval is the slow part of a fit (every span embedded and searched: about 5 minutes for
CodiEsp train's 500 notes on two CPU cores); the fits take seconds. So each case is segmented
and retrieved once against the pack's catalogue texts and the result is kept under the cache
folder as JSON lines (one :class:`~icdcoder.shared.messages.RetrievedNote` a line) beside the
vector of each span's own text (``.spans.npy``, what the retriever searches the memory with).
The cache is keyed by the corpus (its ids and texts) and by what the catalogue search depends
on: catalogue version, embedding model, enrichment, ``top_k``, and the source of the segmenter
and retriever (a changed context rule makes a new cache). Weights and memory are not in
the key: a pack trained from a base reuses the base's cache.

The example memory is then searched from the cached span vectors, the way the retriever does
(exact inner product, :func:`~icdcoder.services.retriever.core.merge_memory`), with each case's
own examples left out on a corpus that is fitted on (leave-one-case-out), so no span is scored
against its own label.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import numpy.typing as npt

from icdcoder.services.retriever.core import (
    Encoder,
    IndexRows,
    Retriever,
    Vectors,
    memory_hits,
    merge_memory,
)
from icdcoder.shared.context import rules_out_every_code
from icdcoder.shared.memory import Example
from icdcoder.shared.messages import NoteIn, RetrievedNote, SegmentedNote
from icdcoder.shared.pack import Pack
from icdcoder.training.corpus import CodedCase, corpus_digest

#: Bump when the cached format changes. What retrieval does is in the key by itself: the
#: source of the modules below (``_retrieval_code``).
CACHE_FORMAT = 7
#: The code that decides a corpus's spans, their context flags and their candidates.
_RETRIEVAL_CODE = (
    "icdcoder.services.segmenter",
    "icdcoder.services.retriever",
    "icdcoder.shared.context",
)

Progress = Callable[[Sequence[CodedCase]], Iterable[CodedCase]]


@dataclass(frozen=True)
class Retrieved:
    """Each case's retrieved note, and one vector per span (all notes' spans, in order)."""

    notes: tuple[RetrievedNote, ...]
    span_vectors: Vectors

    def __post_init__(self) -> None:
        spans = sum(len(note.items) for note in self.notes)
        if self.span_vectors.shape[0] != spans:
            raise ValueError(f"{self.span_vectors.shape[0]} span vectors for {spans} spans")


class RecordingEncoder:
    """An encoder that keeps its last output: the retriever's query vectors of one note."""

    def __init__(self, inner: Encoder) -> None:
        self.inner = inner
        self.last: Vectors | None = None

    def encode(self, texts: Sequence[str]) -> Vectors:
        self.last = self.inner.encode(texts)
        return self.last


def retrieve_cases(
    cases: Sequence[CodedCase],
    segment: Callable[[NoteIn], SegmentedNote],
    make_retriever: Callable[[Encoder], Retriever],
    encoder: Encoder,
    progress: Progress | None = None,
) -> Retrieved:
    """Segment and retrieve every case (catalogue only), keeping each span's query vector."""
    recorder = RecordingEncoder(encoder)
    retriever = make_retriever(recorder)
    if retriever.memory is not None:
        raise ValueError("retrieve the catalogue only: the memory is searched afterwards")
    notes: list[RetrievedNote] = []
    vectors: list[Vectors] = []
    for case in progress(cases) if progress else cases:
        segmented = segment(case.note())
        recorder.last = None
        notes.append(retriever.retrieve(segmented))
        first, rows = 0, []
        for span in segmented.spans:
            rows.append(first)
            first += len(retriever.queries(span))
        if rows:
            assert recorder.last is not None
            vectors.append(recorder.last[rows])
    dim = vectors[0].shape[1] if vectors else 0
    stacked = np.concatenate(vectors) if vectors else np.zeros((0, dim), np.float32)
    return Retrieved(tuple(notes), stacked.astype(np.float32))


def retrieval_key(pack: Pack, top_k: int, runtime: str = "") -> str:
    """``plain-<digest>`` (``enriched-`` with enrichment) over what the catalogue search depends
    on (``runtime``: the encoder and index kinds); not the pack's name, weights or memory."""
    m = pack.manifest
    content = [
        CACHE_FORMAT,
        _retrieval_code(),
        m.catalogue,
        m.model.fingerprint,
        m.enrichment.sha256 if m.enrichment else None,
        top_k,
        runtime,
    ]
    digest = hashlib.sha256(json.dumps(content).encode()).hexdigest()[:12]
    return f"{'enriched' if m.enrichment else 'plain'}-{digest}"


@cache
def _retrieval_code() -> str:
    """A digest of the segmenter's and retriever's source: a rule changed there (a context cue,
    a span filter) makes a new cache instead of fitting on spans it would no longer produce."""
    digest = hashlib.sha256()
    for name in _RETRIEVAL_CODE:
        origin = Path(str(importlib.import_module(name).__file__))
        sources = sorted(origin.parent.glob("*.py")) if origin.name == "__init__.py" else [origin]
        for source in sources:
            digest.update(f"{name}/{source.name}".encode())
            digest.update(source.read_bytes())
    return digest.hexdigest()[:12]


def cache_stem(cache_dir: Path, corpus: str, cases: Sequence[CodedCase], retrieval: str) -> Path:
    """``<cache>/training/<corpus>-<its digest>-<retrieval key>`` (add .jsonl / .spans.npy)."""
    return cache_dir / "training" / f"{corpus}-{corpus_digest(cases)}-{retrieval}"


def read_cache(stem: Path, cases: Sequence[CodedCase]) -> Retrieved | None:
    """The cached retrieval of these cases, or None when absent or not theirs."""
    notes_path, vectors_path = stem.with_suffix(".jsonl"), stem.with_suffix(".spans.npy")
    if not (notes_path.is_file() and vectors_path.is_file()):
        return None
    try:
        lines = notes_path.read_text(encoding="utf-8").splitlines()
        notes = tuple(RetrievedNote.model_validate_json(line) for line in lines)
        if [n.note_id for n in notes] != [c.case_id for c in cases]:
            return None
        return Retrieved(notes, np.load(vectors_path))
    except (OSError, ValueError):
        return None


def write_cache(stem: Path, retrieved: Retrieved) -> None:
    """Both files written beside their target and renamed into place."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    notes_tmp = stem.with_suffix(".jsonl.tmp")
    vectors_tmp = stem.with_suffix(".tmp.npy")
    with notes_tmp.open("w", encoding="utf-8") as handle:
        for note in retrieved.notes:
            handle.write(note.model_dump_json() + "\n")
    np.save(vectors_tmp, retrieved.span_vectors)
    vectors_tmp.replace(stem.with_suffix(".spans.npy"))
    notes_tmp.replace(stem.with_suffix(".jsonl"))


def cached(
    stem: Path, cases: Sequence[CodedCase], compute: Callable[[], Retrieved]
) -> tuple[Retrieved, bool]:
    """The cached retrieval, else ``compute()`` cached; True when it came from the cache."""
    found = read_cache(stem, cases)
    if found is not None:
        return found, True
    retrieved = compute()
    write_cache(stem, retrieved)
    return retrieved, False


def example_owner(source: str) -> str:
    """The case an example or coded note came from: its source's tail (``corpus:<case id>``)."""
    return source.rsplit(":", 1)[-1]


@dataclass(frozen=True)
class ExampleVectors:
    """The memory's examples as the retriever searches them."""

    rows: IndexRows
    vectors: Vectors
    owners: npt.NDArray[np.str_]

    @classmethod
    def encode(cls, examples: Sequence[Example], encoder: Encoder) -> ExampleVectors:
        rows = IndexRows(codes=[e.code for e in examples], texts=[e.text for e in examples])
        owners = np.array([example_owner(e.source) for e in examples])
        return cls(rows, encoder.encode(list(rows.texts)), owners)


def as_searched(notes: Sequence[RetrievedNote]) -> list[RetrievedNote]:
    """The notes as a retriever that does not search ruled-out spans returns them: such a
    span keeps no candidates (training searches every span, for every span's vector)."""
    out = []
    for note in notes:
        items = [
            item.model_copy(update={"candidates": []})
            if item.candidates and rules_out_every_code(item.span)
            else item
            for item in note.items
        ]
        out.append(note.model_copy(update={"items": items}))
    return out


def with_memory(
    notes: Sequence[RetrievedNote],
    span_vectors: Vectors,
    examples: ExampleVectors,
    descriptions: Mapping[str, str],
    *,
    leave_case_out: bool,
    neighbours: int = 10,
) -> list[RetrievedNote]:
    """The notes as the retriever returns them with the memory; ``leave_case_out``: a note's
    own examples (those whose source names its id) are not searched."""
    out: list[RetrievedNote] = []
    offset = 0
    for note in notes:
        n = len(note.items)
        sims = span_vectors[offset : offset + n] @ examples.vectors.T
        offset += n
        if leave_case_out:
            sims[:, examples.owners == note.note_id] = -np.inf
        top = np.argsort(-sims, axis=1)[:, :neighbours]
        items = []
        for i, item in enumerate(note.items):
            ids = [int(j) for j in top[i] if np.isfinite(sims[i, j])]
            hits = memory_hits([float(sims[i, j]) for j in ids], ids, examples.rows)
            items.append(
                item.model_copy(
                    update={"candidates": merge_memory(item.candidates, hits, descriptions)}
                )
            )
        out.append(note.model_copy(update={"items": items}))
    if offset != span_vectors.shape[0]:
        raise ValueError("the span vectors do not match the notes")
    return out
