"""Lexical search over the catalogue texts: BM25 (``bm25s``) beside the dense index.

Dense similarity finds paraphrases but can miss the exact term a note uses ("paroxysmal atrial
fibrillation" has a row of its own; the embedding of a long span may land nearer a sibling's).
BM25 over the same rows (descriptions, inclusion terms, Alphabetic Index term paths), English
stop words removed and words stemmed (PyStemmer, Snowball), finds the rows that share the
span's words, weighted by how rare each word is in the catalogue. The retriever adds those rows
to the vector index's with their cosine; a row whose words are exactly the span's ranks first.
The index is built once (about 4 s for 130,974 rows) and cached, keyed by its texts.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import tempfile
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from icdcoder.shared.logging import get_logger

log = get_logger(__name__)

#: Single characters count ("type 2", "E. coli"): bm25s's default pattern drops them.
TOKEN_PATTERN = r"(?u)\b\w+\b"

_WORD = re.compile(TOKEN_PATTERN)


def phrase_key(text: str) -> str:
    """A text's words, lower case, punctuation and spacing ignored (exact-phrase matching)."""
    return " ".join(_WORD.findall(text.lower()))


class LexicalIndex:
    """BM25 over ``texts``; :meth:`search` gives, per query, its best rows with a score above 0.

    :meth:`load_or_build` keeps the index in the cache folder, keyed by the texts: tokenising
    and stemming 130,000 rows takes about 4 s, loading them back 0.01 s."""

    def __init__(self, texts: Sequence[str], model: Any = None) -> None:
        import bm25s
        import Stemmer

        logging.getLogger("bm25s").setLevel(logging.WARNING)  # a debug line per index built
        self._bm25s = bm25s
        self._stemmer = Stemmer.Stemmer("english")
        self._texts = texts
        if model is None:
            model = bm25s.BM25()
            model.index(self._tokenize(texts), show_progress=False)
        self._model = model
        self._vocabulary: dict[str, int] = model.vocab_dict
        self._scores = _term_document_matrix(model.scores)
        self.size = len(texts)

    @classmethod
    def load_or_build(cls, texts: Sequence[str], cache_dir: Path) -> LexicalIndex:
        """The index of ``texts`` from ``cache_dir`` when there, else built and saved (a cache
        that cannot be written, or one that cannot be read, only costs the build)."""
        import bm25s

        folder = cache_dir / f"bm25-{texts_key(texts)}"
        if (folder / DONE).is_file():
            try:
                model = bm25s.BM25.load(str(folder), show_progress=False)
                return cls(texts, model)
            except (OSError, ValueError) as exc:
                log.warning("lexical_cache_unreadable_rebuilding", error=type(exc).__name__)
        index = cls(texts)
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=".bm25-", dir=cache_dir))
            index._model.save(str(tmp), show_progress=False)
            (tmp / DONE).write_text("ok\n")
            if folder.exists():
                shutil.rmtree(tmp, ignore_errors=True)  # another process saved it first
            else:
                tmp.rename(folder)
        except OSError as exc:
            log.warning("lexical_cache_not_written", error=type(exc).__name__)
        return index

    def _tokenize(self, texts: Sequence[str], *, ids: bool = True) -> Any:
        return self._bm25s.tokenize(
            list(texts),
            token_pattern=TOKEN_PATTERN,
            stopwords="en",
            stemmer=self._stemmer,
            show_progress=False,
            return_ids=ids,
        )

    def search(self, queries: Sequence[str], k: int) -> list[list[int]]:
        """Each query's rows by BM25, best first (at most ``k``; none without a shared word).

        A row whose words are exactly the query's comes first whatever its BM25 score."""
        k = min(k, self.size)
        if not queries or k == 0:
            return [[] for _ in queries]
        tokens = self._tokenize(queries, ids=False)
        scores = _query_matrix(tokens, self._vocabulary, self._scores.shape[0]) @ self._scores
        found: list[list[int]] = []
        for i, query in enumerate(queries):
            begin, stop = scores.indptr[i], scores.indptr[i + 1]
            rows, values = scores.indices[begin:stop], scores.data[begin:stop]
            rows, values = rows[values > 0], values[values > 0]
            if len(rows) > k:
                best = np.argpartition(-values, k - 1)[:k]
                rows, values = rows[best], values[best]
            hits = [int(row) for row in rows[np.lexsort((rows, -values))]]
            exact = [row for row in hits if self.is_exact(row, query)]
            found.append(exact + [row for row in hits if row not in exact])
        return found

    def is_exact(self, row: int, query: str) -> bool:
        return _key(self._texts[row]) == _key(query)


def _term_document_matrix(scores: dict[str, Any]) -> Any:
    """bm25s's index (each word's BM25 weight in each row: CSR by word) as a sparse matrix."""
    from scipy.sparse import csr_matrix

    words = len(scores["indptr"]) - 1
    matrix = (scores["data"], scores["indices"], scores["indptr"])
    return csr_matrix(matrix, shape=(words, int(scores["num_docs"])))


def _query_matrix(tokens: Sequence[Sequence[str]], vocabulary: dict[str, int], size: int) -> Any:
    """Queries by words: how often each query has each indexed word (BM25 sums per word).

    bm25s's vocabulary may hold one more entry than its matrix has words: the empty token."""
    from scipy.sparse import csr_matrix

    query_rows: list[int] = []
    word_columns: list[int] = []
    for row, words in enumerate(tokens):
        for word in words:
            column = vocabulary.get(word)
            if column is not None and column < size:
                query_rows.append(row)
                word_columns.append(column)
    counts = np.ones(len(query_rows), dtype=np.float32)
    shape = (len(tokens), size)
    return csr_matrix((counts, (query_rows, word_columns)), shape=shape)


#: Marks a cache folder as complete.
DONE = "complete"


def texts_key(texts: Sequence[str]) -> str:
    """What identifies a lexical index: its texts and how they are tokenised."""
    h = hashlib.sha256(f"bm25s/{TOKEN_PATTERN}/snowball-english/en-stopwords\n".encode())
    for text in texts:
        h.update(text.encode())
        h.update(b"\n")
    return h.hexdigest()[:16]


@lru_cache(maxsize=65_536)
def _key(text: str) -> str:
    return phrase_key(text)
