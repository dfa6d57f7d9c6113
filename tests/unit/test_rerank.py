"""The retrieval re-ranker's features, its trees' order, and the retriever that uses it."""

from typing import Any

import numpy as np
import pytest

from icdcoder.services.retriever import rerank
from icdcoder.services.retriever.core import OVERFETCH, IndexRows, Retriever
from icdcoder.services.retriever.rerank import (
    FEATURES,
    Pooled,
    Reranker,
    code_traits,
    pool_rows,
    pool_support,
)
from icdcoder.shared.catalogue import Catalogue
from icdcoder.shared.messages import Candidate, RetrievedNote, SegmentedNote, SpanCandidates
from icdcoder.training.corpus import CodedCase
from icdcoder.training.rerank_fit import fit_reranker, rerank_rows, reranked
from tests.fakes import HashingEncoder, NumpyIndex, make_span


def stump(feature: str, threshold: float, below: float, above: float) -> dict[str, Any]:
    """One tree of one split on ``feature``: a ``retrieval`` section's trees."""
    return {
        "baseline": 0.0,
        "trees": [
            {
                "feature": [FEATURES.index(feature), 0, 0],
                "threshold": [threshold, 0.0, 0.0],
                "left": [1, -1, -1],
                "right": [2, -1, -1],
                "value": [0.0, below, above],
            }
        ],
    }


def section(feature: str, *, pool: int = 4) -> dict[str, Any]:
    """Trees that rank a code with ``feature`` above 0.5 first."""
    return {"pool": pool, "features": list(FEATURES), "trees": stump(feature, 0.5, 0.0, 1.0)}


def no_traits(code: str) -> tuple[float, float, float, float]:
    return (0.0, float(len(code.replace(".", ""))), 1.0, 0.0)


def test_pool_rows_in_feature_order() -> None:
    pools = [
        [Pooled("E11.9", 0.9, True), Pooled("E11.8", 0.7, False)],
        [Pooled("E11.9", 0.6, False)],
    ]
    support = pool_support(pools)
    assert support == {"E11.9": 2, "E11.8": 1}
    rows = pool_rows(3, pools[0], support, no_traits)
    named = [dict(zip(FEATURES, row, strict=True)) for row in rows]
    assert named[0]["rank"] == 0 and named[1]["rank"] == 1
    assert named[0]["gap"] == 0 and named[1]["gap"] == pytest.approx(0.2)
    assert named[0]["title"] == 1 and named[1]["title"] == 0
    assert named[0]["support"] == pytest.approx(np.log1p(2)) and named[0]["words"] == 3
    assert named[0]["length"] == 4 and named[0]["leaf"] == 1


def test_code_traits_read_the_catalogue(catalogue: Catalogue) -> None:
    traits = code_traits(catalogue)
    unspecified, length, leaf, category = traits("J18.9")  # Pneumonia, unspecified organism
    assert (unspecified, length, leaf) == (1.0, 4.0, 1.0)
    assert traits("J18")[2] == 0.0 and traits("J18")[3] == category
    assert traits("I10")[0] == 0.0


def test_keep_orders_each_pool_by_the_trees() -> None:
    reranker = Reranker.from_dict(section("title"))
    pools = [
        [Pooled("A00.0", 0.9, False), Pooled("A00.1", 0.8, True), Pooled("A00.9", 0.7, True)],
        [Pooled("B00.0", 0.5, False)],
        [],
    ]
    kept = reranker.keep(pools, [2, 1, 1], no_traits, top_k=2)
    # titles first, ties in cosine order, two kept; a pool of one and an empty pool pass
    assert kept == [[1, 2], [0], []]


def test_keep_scores_a_long_note_in_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    reranker = Reranker.from_dict(section("title", pool=3))
    pools = [
        [Pooled("A00.0", 0.9, False), Pooled("A00.1", 0.8, i % 2 == 0), Pooled("A00.9", 0.7, True)]
        for i in range(7)
    ]
    whole = reranker.keep(pools, [1] * 7, no_traits, top_k=2)
    monkeypatch.setattr(rerank, "CHUNK", 4)  # 21 rows: six chunks, one span across two
    assert reranker.keep(pools, [1] * 7, no_traits, top_k=2) == whole
    assert whole[0] == [1, 2] and whole[1] == [2, 0]


def test_keep_looks_at_the_first_pool_codes_only() -> None:
    reranker = Reranker.from_dict(section("title", pool=2))
    pools = [[Pooled("A00.0", 0.9, False), Pooled("A00.1", 0.8, False), Pooled("A00.9", 0.7, True)]]
    assert reranker.keep(pools, [1], no_traits, top_k=3) == [[0, 1]]


@pytest.mark.parametrize(
    "change",
    [{"features": ["score"]}, {"pool": 0}, {"trees": {"baseline": 0.0, "trees": []}}],
)
def test_a_malformed_section_is_refused(change: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Reranker.from_dict(section("title") | change)


ROWS = IndexRows(
    codes=["K21.9", "K21.0", "R10.13", "K30"],
    texts=[
        "Gastro-esophageal reflux disease without esophagitis",
        "Reflux esophagitis",
        "Epigastric pain",
        "Functional dyspepsia",
    ],
)
TITLES = {
    "K21.9": "Gastro-esophageal reflux disease without esophagitis",
    "K21.0": "Gastro-esophageal reflux disease with esophagitis",
    "R10.13": "Epigastric pain",
    "K30": "Functional dyspepsia",
}


class CountingIndex(NumpyIndex):
    def __init__(self, vectors: np.ndarray[Any, np.dtype[np.float32]]) -> None:
        super().__init__(vectors)
        self.asked: list[int] = []

    def search(self, queries: Any, k: int) -> Any:
        self.asked.append(k)
        return super().search(queries, k)


def retriever(reranker: Reranker | None) -> tuple[Retriever, CountingIndex]:
    encoder = HashingEncoder()
    index = CountingIndex(encoder.encode(ROWS.texts))
    found = Retriever(
        encoder,
        index,
        ROWS,
        TITLES,
        catalogue_version="test",
        top_k=2,
        reranker=reranker,
        traits=no_traits,
    )
    return found, index


def test_the_retriever_keeps_the_rerankers_best_of_a_wider_pool() -> None:
    text = "reflux esophagitis"
    note = SegmentedNote(note_id="n1", text=text, spans=[make_span(text, text)])
    plain, plain_index = retriever(None)
    by_cosine = [c.code for c in plain.retrieve(note).items[0].candidates]
    assert by_cosine[0] == "K21.0" and len(by_cosine) == 2
    # trees that put the codes whose own title matched first: K21.0 matched another text
    reranked, index = retriever(Reranker.from_dict(section("title")))
    kept = reranked.retrieve(note).items[0].candidates
    assert kept[0].code != "K21.0" and len(kept) == 2
    assert all(c.matched == TITLES[c.code] for c in kept)
    assert plain_index.asked == [2 * OVERFETCH] and index.asked == [4 * OVERFETCH]


def test_a_reranker_needs_the_codes_traits() -> None:
    encoder = HashingEncoder()
    with pytest.raises(ValueError, match="traits"):
        Retriever(
            encoder,
            NumpyIndex(encoder.encode(ROWS.texts)),
            ROWS,
            TITLES,
            catalogue_version="test",
            reranker=Reranker.from_dict(section("title")),
        )


def test_fitted_trees_load_and_rank_what_they_learnt() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((600, len(FEATURES)))
    y = (x[:, FEATURES.index("title")] > 0.5).astype(np.float64)  # gold: the title matched
    fitted = fit_reranker(x, y, pool=3, params={"max_iter": 20, "max_leaf_nodes": 4})
    assert fitted["provenance"]["rows"] == 600 and fitted["provenance"]["positives"] == y.sum()
    reranker = Reranker.from_dict(fitted)
    pools = [[Pooled("A00.0", 0.9, False), Pooled("A00.1", 0.8, True)]]
    assert reranker.keep(pools, [1], no_traits, top_k=1) == [[1]]


def coded_note() -> tuple[CodedCase, RetrievedNote]:
    text = "reflux esophagitis and epigastric pain"
    first, second = (
        make_span("reflux esophagitis", text, "s0000"),
        make_span("epigastric pain", text, "s0001"),
    )

    def candidate(code: str, score: float, matched: str) -> Candidate:
        return Candidate(code=code, description=TITLES[code], score=score, matched=matched)

    items = [
        SpanCandidates(
            span=first,
            candidates=[
                candidate("K21.0", 0.9, "Reflux esophagitis"),
                candidate("K30", 0.6, TITLES["K30"]),
                candidate("K21.9", 0.5, TITLES["K21.9"]),
            ],
        ),
        SpanCandidates(span=second, candidates=[candidate("R10.13", 0.95, TITLES["R10.13"])]),
    ]
    case = CodedCase(case_id="n1", text=text, codes=("k21.9", "r10.13"))
    return case, RetrievedNote(note_id="n1", text=text, catalogue_version="t", items=items)


def test_training_rows_are_labelled_by_the_notes_codes() -> None:
    case, note = coded_note()
    x, y = rerank_rows([case], [note], no_traits, pool=2)
    # each span's first two codes; K21.9 is third in its pool, so not a row
    assert x.shape == (3, len(FEATURES)) and y.tolist() == [0.0, 0.0, 1.0]
    assert x[:, FEATURES.index("title")].tolist() == [0.0, 1.0, 1.0]


def test_training_notes_keep_what_the_retriever_would() -> None:
    _, note = coded_note()
    reranker = Reranker.from_dict(section("title", pool=3))
    (kept,) = reranked([note], reranker, no_traits, top_k=1)
    assert [c.code for c in kept.items[0].candidates] == ["K30"]
    assert [c.code for c in kept.items[1].candidates] == ["R10.13"]
