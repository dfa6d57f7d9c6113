"""Lexical search over the catalogue texts: BM25 (``bm25s``) beside the dense index.

Dense similarity finds paraphrases but can miss the exact term a note uses ("paroxysmal atrial
fibrillation" has a row of its own; the embedding of a long span may land nearer a sibling's).
BM25 over the same rows (descriptions, inclusion terms, Alphabetic Index term paths), English
stop words removed and words stemmed (PyStemmer, Snowball), finds the rows that share the
span's words, weighted by how rare each word is in the catalogue. The retriever adds those rows
to the vector index's with their cosine; a row whose words are exactly the span's ranks first.
The index is built in memory at start (about 2 s for 130,000 rows on one core).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

#: Single characters count ("type 2", "E. coli"): bm25s's default pattern drops them.
TOKEN_PATTERN = r"(?u)\b\w+\b"

_WORD = re.compile(TOKEN_PATTERN)


def phrase_key(text: str) -> str:
    """A text's words, lower case, punctuation and spacing ignored (exact-phrase matching)."""
    return " ".join(_WORD.findall(text.lower()))


class LexicalIndex:
    """BM25 over ``texts``; :meth:`search` gives, per query, its best rows with a score above 0."""

    def __init__(self, texts: Sequence[str]) -> None:
        import bm25s
        import Stemmer

        logging.getLogger("bm25s").setLevel(logging.WARNING)  # a debug line per index built
        self._bm25s = bm25s
        self._stemmer = Stemmer.Stemmer("english")
        tokens = self._tokenize(texts)
        self._model = bm25s.BM25()
        self._model.index(tokens, show_progress=False)
        self._keys = [phrase_key(text) for text in texts]
        self.size = len(texts)

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
        found: list[list[int]] = [[] for _ in queries]
        asked = [i for i, words in enumerate(tokens) if words]
        if asked:
            rows, scores = self._model.retrieve(
                [tokens[i] for i in asked], k=k, show_progress=False, n_threads=1
            )
            for position, i in enumerate(asked):
                key = phrase_key(queries[i])
                hits = [
                    int(row)
                    for row, score in zip(rows[position], scores[position], strict=True)
                    if score > 0
                ]
                exact = [row for row in hits if self._keys[row] == key]
                found[i] = exact + [row for row in hits if self._keys[row] != key]
        return found

    def is_exact(self, row: int, query: str) -> bool:
        return self._keys[row] == phrase_key(query)
