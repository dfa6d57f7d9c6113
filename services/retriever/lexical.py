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
        found: list[list[int]] = [[] for _ in queries]
        asked = [i for i, words in enumerate(tokens) if words]
        if asked:
            rows, scores = self._model.retrieve(
                [tokens[i] for i in asked], k=k, show_progress=False, n_threads=1
            )
            for position, i in enumerate(asked):
                hits = [
                    int(row)
                    for row, score in zip(rows[position], scores[position], strict=True)
                    if score > 0
                ]
                exact = [row for row in hits if self.is_exact(row, queries[i])]
                found[i] = exact + [row for row in hits if row not in exact]
        return found

    def is_exact(self, row: int, query: str) -> bool:
        return _key(self._texts[row]) == _key(query)


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
