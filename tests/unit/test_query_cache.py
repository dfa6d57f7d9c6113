"""The query cache: each distinct text embedded once, the last ``capacity`` remembered."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pytest

from icdcoder.services.retriever.query_cache import CachedEncoder
from tests.fakes import HashingEncoder


class CountingEncoder(HashingEncoder):
    """The hashing encoder, recording each batch it is asked to embed."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[str]] = []

    def encode(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        self.batches.append(list(texts))
        return super().encode(texts)


def test_repeated_texts_are_embedded_once_and_keep_their_vectors() -> None:
    inner = CountingEncoder()
    cached = CachedEncoder(inner, capacity=10)
    first = cached.encode(["fever", "cough", "fever"])
    second = cached.encode(["cough", "hypertension"])
    assert inner.batches == [["fever", "cough"], ["hypertension"]]
    expected = HashingEncoder().encode(["fever", "cough", "fever", "cough", "hypertension"])
    assert np.array_equal(np.concatenate([first, second]), expected)
    assert first.dtype == np.float32
    assert (cached.asked, cached.embedded, len(cached)) == (5, 3, 3)


def test_the_least_recently_used_text_is_forgotten_first() -> None:
    inner = CountingEncoder()
    cached = CachedEncoder(inner, capacity=2)
    cached.encode(["a b", "c d"])
    cached.encode(["a b"])  # "a b" used last: "c d" goes when a third text comes
    cached.encode(["e f"])
    cached.encode(["a b", "c d"])
    assert inner.batches == [["a b", "c d"], ["e f"], ["c d"]]
    assert len(cached) == 2


def test_an_empty_batch_and_an_empty_cache() -> None:
    inner = CountingEncoder()
    assert CachedEncoder(inner, capacity=1).encode([]).shape[0] == 0
    with pytest.raises(ValueError, match="one vector at least"):
        CachedEncoder(inner, capacity=0)
