"""The retrieval re-ranker: which of a span's first ``pool`` codes become its candidates.

Retrieval ranks a span's codes by the cosine of their best catalogue text. On dev, the spans'
first 40 codes by cosine hold 0.838 of the gold (case, code) pairs, their first 20 only 0.788
(every span searched; docs/accuracy.md, stop 35): the right code is often found, and ranked
below codes that share the span's words. The re-ranker scores each of the first ``pool`` codes
with boosted trees fitted on a coded corpus (``icdcoder train --rerank POOL``) over
:data:`FEATURES`, and keeps the best ``top_k`` in its order:

- ``score``: the cosine of the code's best text; ``rank``: its place by cosine (a code whose
  text is exactly the span's words first); ``gap``: how far below the span's best it is;
- ``words``: the span's word count; ``title``: whether the text that matched is the code's own
  title (not an inclusion term or an index path);
- ``support``: log(1 + how many of the note's spans have the code in their pool);
- the code itself: ``unspecified`` (its title says so), ``length`` (characters, the dot left
  out), ``leaf`` (it can be assigned), ``category``
  (:func:`~icdcoder.services.verifier.note_model.category_place`).

The category is a prior over the classification learnt from the corpus the trees are fitted
on, as in the note model. No IO: the weights file's ``retrieval`` section holds the trees.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from icdcoder.services.verifier.boosted import BoostedTrees
from icdcoder.services.verifier.note_model import category_place
from icdcoder.shared.cancel import checkpoint
from icdcoder.shared.catalogue import Catalogue

FEATURES = (
    "score",
    "rank",
    "gap",
    "words",
    "title",
    "support",
    "unspecified",
    "length",
    "leaf",
    "category",
)

#: Rows walked through the trees at once: the walk holds a node per tree and row (300 trees x
#: 8,192 rows x 8 bytes: 20 MB); a 200,000-character note has 180,000 rows (4 s of walking).
CHUNK = 8_192

#: A code's own features: ``unspecified``, ``length``, ``leaf``, ``category``.
CodeTraits = Callable[[str], tuple[float, float, float, float]]


@dataclass(frozen=True)
class Pooled:
    """One code of a span's pool, in cosine order."""

    code: str
    score: float
    #: The text that matched is the code's own title.
    title: bool


def code_traits(catalogue: Catalogue) -> CodeTraits:
    """:data:`CodeTraits` from the catalogue, each code's computed once."""
    cache: dict[str, tuple[float, float, float, float]] = {}

    def traits(code: str) -> tuple[float, float, float, float]:
        found = cache.get(code)
        if found is None:
            info = catalogue.codes.get(code)
            found = (
                float(info is not None and "unspecified" in info.description.lower()),
                float(len(code.replace(".", ""))),
                float(info is not None and info.is_leaf),
                category_place(code),
            )
            cache[code] = found
        return found

    return traits


def pool_support(pools: Sequence[Sequence[Pooled]]) -> Counter[str]:
    """How many of a note's spans have each code in their pool."""
    return Counter(code for pool in pools for code in {p.code for p in pool})


def pool_rows(
    words: int, pool: Sequence[Pooled], support: Mapping[str, int], traits: CodeTraits
) -> list[tuple[float, ...]]:
    """The :data:`FEATURES` of each code of one span's pool, in its order."""
    best = pool[0].score if pool else 0.0
    return [
        (
            p.score,
            float(rank),
            best - p.score,
            float(words),
            float(p.title),
            math.log1p(support.get(p.code, 1)),
            *traits(p.code),
        )
        for rank, p in enumerate(pool)
    ]


@dataclass(frozen=True)
class Reranker:
    """Trees that order a span's first ``pool`` codes by how likely the note is coded with them."""

    trees: BoostedTrees
    pool: int

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Reranker:
        """The weights file's ``retrieval`` section: ``pool``, ``features`` and ``trees``."""
        features = tuple(data.get("features") or ())
        if features != FEATURES:
            raise ValueError(f"retrieval re-ranker features {features} are not {FEATURES}")
        pool = int(data["pool"])
        if pool < 1:
            raise ValueError(f"retrieval re-ranker pool must be 1 or more, not {pool}")
        return cls(BoostedTrees.from_json(data["trees"], len(FEATURES)), pool)

    def keep(
        self,
        pools: Sequence[Sequence[Pooled]],
        words: Sequence[int],
        traits: CodeTraits,
        top_k: int,
    ) -> list[list[int]]:
        """For each span of one note (its pool, its word count), the places in its pool of the
        ``top_k`` codes kept, best first (ties keep the cosine order)."""
        support = pool_support(pools)
        rows = [
            row
            for pool, count in zip(pools, words, strict=True)
            for row in pool_rows(count, pool[: self.pool], support, traits)
        ]
        chunks = [np.zeros(0)]
        for start in range(0, len(rows), CHUNK):
            checkpoint()  # a long note's pools take seconds: the worker may stop between
            chunks.append(self.trees.log_odds(rows[start : start + CHUNK]))
        scores = np.concatenate(chunks)
        kept: list[list[int]] = []
        start = 0
        for pool in pools:
            size = min(len(pool), self.pool)
            own = scores[start : start + size]
            start += size
            order = np.argsort(-own, kind="stable")[:top_k]
            kept.append([int(i) for i in order])
        return kept
