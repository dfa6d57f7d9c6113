"""Retriever core: spans -> nearest catalogue codes. Pure: the encoder and index are injected.

Each span is embedded and searched against the catalogue texts (descriptions, inclusion terms,
alphabetic-index paths). Several texts of one code collapse into one candidate carrying the
best score and the text that matched. Spans flagged *family* or *historical* are also searched
as "family history of ..." / "personal history of ...", so the Z80-Z87 history codes that
describe exactly that context are among the candidates.

With a lexical index (BM25, :mod:`~icdcoder.services.retriever.lexical`), each query is also
searched by its words: the rows the words find join the vector index's with their exact cosine
similarity (rows the approximate HNSW search passed over), so every candidate's ``score`` means
the same thing, and a code whose text is exactly the span's words ranks first. Reciprocal rank
fusion of the two rankings was measured and not kept (docs/accuracy.md).

With a retrieval re-ranker (``rerank.py``, trees in the pack's weights), each span's first
``pool`` codes in that order are scored and its best ``top_k`` kept instead of its first.

Each row of the index stands for the code a coder assigns from its text
(``Catalogue.assignable``): a category's title finds its unspecified leaf (N17 -> N17.9).

With an example memory (confirmed span -> code examples, ``shared/memory.py``), each span is
also searched against the examples: a code carried by its nearest examples gets their
similarity and vote count, and joins the candidates if the catalogue search missed it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt
from pydantic import TypeAdapter

from icdcoder.services.retriever.rerank import CodeTraits, Pooled, Reranker
from icdcoder.shared.cancel import checkpoint
from icdcoder.shared.context import query_texts, rules_out_every_code
from icdcoder.shared.messages import Candidate, RetrievedNote, SegmentedNote, Span, SpanCandidates

Vectors = npt.NDArray[np.float32]

#: How many rows to fetch per candidate wanted: several texts of one code share the top rows.
OVERFETCH = 4
#: Queries embedded per batch; the worker can stop between batches (shared.cancel).
QUERY_BATCH = 512
#: A span's candidates validated as one list: half the time of one ``Candidate(...)`` each
#: (a note has about a thousand).
_CANDIDATES = TypeAdapter(list[Candidate])


class Encoder(Protocol):
    def encode(self, texts: Sequence[str]) -> Vectors:
        """L2-normalised float32 vectors, one row per text."""
        ...


class VectorIndex(Protocol):
    def search(self, queries: Vectors, k: int) -> tuple[Vectors, npt.NDArray[np.int64]]:
        """Inner-product scores and row ids of the ``k`` nearest rows per query (-1: none)."""
        ...


class LexicalSearch(Protocol):
    def search(self, queries: Sequence[str], k: int) -> list[list[int]]:
        """Each query's rows by their words, best first (exact phrase matches first)."""
        ...

    def is_exact(self, row: int, query: str) -> bool:
        """Whether the row's words are exactly the query's."""
        ...


@dataclass(frozen=True)
class Lexical:
    """The lexical side of retrieval: its index, and the dense vectors of given rows (the
    cosine of a code only the words found)."""

    index: LexicalSearch
    vectors: Callable[[Sequence[int]], Vectors]
    #: Rows per query taken from the lexical ranking.
    k: int = 10


@dataclass
class _Found:
    """One span's codes so far: best cosine and its row; codes whose text is the span's words."""

    dense: dict[str, tuple[float, int]]
    exact: set[str]


@dataclass(frozen=True)
class IndexRows:
    """What each row of the vector index stands for."""

    codes: Sequence[str]
    texts: Sequence[str]


@dataclass(frozen=True)
class ExampleIndex:
    """The example memory as vectors: row i is ``rows.texts[i]``, coded ``rows.codes[i]``."""

    index: VectorIndex
    rows: IndexRows
    #: How many nearest examples vote per span.
    neighbours: int = 10


def memory_hits(
    scores: Sequence[float], ids: Sequence[int], rows: IndexRows
) -> dict[str, tuple[float, int, str]]:
    """Per code among a span's nearest examples: (best similarity, votes, best example text)."""
    hits: dict[str, tuple[float, int, str]] = {}
    for score, row in zip(scores, ids, strict=True):
        if row < 0:
            continue
        code = rows.codes[row]
        best, votes, text = hits.get(code, (float("-inf"), 0, ""))
        if score > best:
            best, text = score, rows.texts[row]
        hits[code] = (best, votes + 1, text)
    return hits


def merge_memory(
    candidates: Sequence[Candidate],
    hits: Mapping[str, tuple[float, int, str]],
    descriptions: Mapping[str, str],
) -> list[Candidate]:
    """Catalogue candidates annotated with memory hits, plus the codes only the memory found.

    Ranked by the better of the two similarities; a memory-only code has catalogue score 0.
    """
    merged: list[Candidate] = []
    for cand in candidates:
        hit = hits.get(cand.code)
        if hit is None:
            merged.append(cand)
        else:
            merged.append(
                cand.model_copy(
                    update={
                        "memory_score": round(float(hit[0]), 6),
                        "memory_votes": hit[1],
                        "example": hit[2],
                    }
                )
            )
    known = {c.code for c in candidates}
    for code, (best, votes, text) in hits.items():
        if code in known or code not in descriptions:
            continue
        merged.append(
            Candidate(
                code=code,
                description=descriptions[code],
                score=0.0,
                matched="",
                memory_score=round(float(best), 6),
                memory_votes=votes,
                example=text,
            )
        )
    return sorted(merged, key=lambda c: (-max(c.score, c.memory_score), c.code))


class Retriever:
    def __init__(
        self,
        encoder: Encoder,
        index: VectorIndex,
        rows: IndexRows,
        descriptions: Mapping[str, str],
        *,
        catalogue_version: str,
        pack: str = "",
        top_k: int = 20,
        memory: ExampleIndex | None = None,
        lexical: Lexical | None = None,
        search_ruled_out: bool = False,
        phrases: bool = True,
        reranker: Reranker | None = None,
        traits: CodeTraits | None = None,
    ) -> None:
        self._encoder = encoder
        self._index = index
        self._rows = rows
        self._descriptions = descriptions
        self.catalogue_version = catalogue_version
        self.pack = pack
        self.top_k = top_k
        self.memory = memory
        self.lexical = lexical
        #: Also search spans no code may come of (:func:`rules_out_every_code`); they get no
        #: candidates otherwise, and cost no encoder time.
        self.search_ruled_out = search_ruled_out
        #: Also search a long span's phrases (``shared/context.phrases``).
        self.phrases = phrases
        #: Orders each span's first ``reranker.pool`` codes before the ``top_k`` are kept
        #: (``rerank.py``; it needs ``traits``, the codes' own features).
        if reranker is not None and traits is None:
            raise ValueError("a retrieval re-ranker needs the codes' traits")
        self.reranker = reranker
        self.traits = traits

    def queries(self, span: Span) -> list[str]:
        """The texts searched for a span, its own text first."""
        return query_texts(span, by_phrase=self.phrases)

    def retrieve(self, note: SegmentedNote) -> RetrievedNote:
        return self.retrieve_many([note])[0]

    def retrieve_many(self, notes: Sequence[SegmentedNote]) -> list[RetrievedNote]:
        """Several notes at once: their queries embedded and searched as one batch (the
        encoder's batches stay full however short each note is). Each note's ``retriever``
        timing is its share, by query count, of the batch's time."""
        started = time.perf_counter()
        queries: list[str] = []
        owner: list[tuple[int, int]] = []  # (note, span) of each query
        searched: list[list[int]] = []  # per note: the spans searched
        first_query: list[list[int]] = []  # per note, per searched span: its own text's query
        for n, note in enumerate(notes):
            spans, firsts = [], []
            for i, span in enumerate(note.spans):
                if not self.search_ruled_out and rules_out_every_code(span):
                    continue
                spans.append(i)
                firsts.append(len(queries))
                for text in self.queries(span):
                    queries.append(text)
                    owner.append((n, i))
            searched.append(spans)
            first_query.append(firsts)
        # per note, per span: what was found; Candidates made for the top k only
        found = [[_Found({}, set()) for _ in note.spans] for note in notes]
        vectors = self._encode(queries) if queries else None
        if vectors is not None:
            checkpoint()
            scores, ids = self._index.search(vectors, self._width * OVERFETCH)
            for q, (n, i) in enumerate(owner):
                self._collect(found[n][i].dense, scores[q], ids[q])
            if self.lexical is not None:
                self._collect_lexical(self.lexical, queries, vectors, owner, found)
        per_note = [0] * len(notes)
        for n, _ in owner:
            per_note[n] += 1
        note_items = []
        for n, note in enumerate(notes):
            items = [
                SpanCandidates(span=span, candidates=self._candidates(ranked))
                for span, ranked in zip(note.spans, self._kept(note.spans, found[n]), strict=True)
            ]
            if self.memory is not None and vectors is not None and searched[n]:
                items = self._with_memory(items, searched[n], vectors[first_query[n]], self.memory)
            note_items.append(items)
        elapsed = time.perf_counter() - started
        return [
            RetrievedNote(
                note_id=note.note_id,
                text=note.text,
                catalogue_version=self.catalogue_version,
                pack=self.pack,
                items=items,
                timings={
                    **note.timings,
                    "retriever": elapsed * (per_note[n] / len(owner) if owner else 1 / len(notes)),
                },
            )
            for n, (note, items) in enumerate(zip(notes, note_items, strict=True))
        ]

    def _encode(self, queries: Sequence[str]) -> Vectors:
        """The queries' vectors, :data:`QUERY_BATCH` at a time with a cancellation checkpoint
        between batches (a 200,000-character note has thousands of spans)."""
        chunks = []
        for start in range(0, len(queries), QUERY_BATCH):
            checkpoint()
            chunks.append(self._encoder.encode(queries[start : start + QUERY_BATCH]))
        return chunks[0] if len(chunks) == 1 else np.concatenate(chunks)

    def _collect(
        self, found: dict[str, tuple[float, int]], scores: Vectors, ids: npt.NDArray[np.int64]
    ) -> None:
        codes = self._rows.codes
        for score, row in zip(scores.tolist(), ids.tolist(), strict=True):
            if row < 0:
                continue
            code = codes[row]
            best = found.get(code)
            if best is None or score > best[0]:
                found[code] = (score, row)

    def _collect_lexical(
        self,
        lexical: Lexical,
        queries: Sequence[str],
        vectors: Vectors,
        owner: Sequence[tuple[int, int]],
        found: list[list[_Found]],
    ) -> None:
        """The rows each query's words find, with their cosine, into its span's :class:`_Found`
        (a code the words alone found gets a real ``score``)."""
        hits = lexical.index.search(queries, lexical.k)
        rows = sorted({row for items in hits for row in items})
        if not rows:
            return
        position = {row: p for p, row in enumerate(rows)}
        cosines = vectors @ lexical.vectors(rows).T  # queries x rows
        codes = self._rows.codes
        for q, (n, i) in enumerate(owner):
            span = found[n][i]
            for row in hits[q]:
                code = codes[row]
                score = float(cosines[q, position[row]])
                best = span.dense.get(code)
                if best is None or score > best[0]:
                    span.dense[code] = (score, row)
                if lexical.index.is_exact(row, queries[q]):
                    span.exact.add(code)

    def _with_memory(
        self,
        items: list[SpanCandidates],
        searched: Sequence[int],
        vectors: Vectors,
        memory: ExampleIndex,
    ) -> list[SpanCandidates]:
        """``items`` with the memory's examples merged into those of the ``searched`` spans
        (``vectors``: their own texts' vectors, in that order)."""
        scores, ids = memory.index.search(vectors, memory.neighbours)
        items = list(items)
        for row, i in enumerate(searched):
            hits = memory_hits(scores[row].tolist(), ids[row].tolist(), memory.rows)
            merged = merge_memory(items[i].candidates, hits, self._descriptions)
            items[i] = items[i].model_copy(update={"candidates": merged})
        return items

    @property
    def _width(self) -> int:
        """How many codes a span's search must find: its pool with a re-ranker."""
        return max(self.top_k, self.reranker.pool) if self.reranker else self.top_k

    @staticmethod
    def _ranked(found: _Found) -> list[tuple[str, tuple[float, int]]]:
        """A span's codes by cosine, a code whose text is exactly the span's first."""
        return sorted(
            found.dense.items(), key=lambda item: (item[0] not in found.exact, -item[1][0], item[0])
        )

    def _kept(
        self, spans: Sequence[Span], found: Sequence[_Found]
    ) -> list[list[tuple[str, tuple[float, int]]]]:
        """Each span's ``top_k`` codes: the first by cosine, or the re-ranker's best of its
        pool."""
        ranked = [self._ranked(f) for f in found]
        if self.reranker is None or self.traits is None:
            return [r[: self.top_k] for r in ranked]
        texts, titles = self._rows.texts, self._descriptions
        pools = [
            [
                Pooled(code, score, texts[row] == titles[code])
                for code, (score, row) in r[: self.reranker.pool]
            ]
            for r in ranked
        ]
        words = [len(span.text.split()) for span in spans]
        kept = self.reranker.keep(pools, words, self.traits, self.top_k)
        return [[r[i] for i in places] for r, places in zip(ranked, kept, strict=True)]

    def _candidates(self, ranked: Sequence[tuple[str, tuple[float, int]]]) -> list[Candidate]:
        return _CANDIDATES.validate_python(
            [
                {
                    "code": code,
                    "description": self._descriptions[code],
                    "score": round(float(score), 6),
                    "matched": self._rows.texts[row],
                }
                for code, (score, row) in ranked
            ]
        )
