from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from icdcoder.services.retriever.core import IndexRows, Lexical, Retriever
from icdcoder.services.retriever.lexical import LexicalIndex, phrase_key
from icdcoder.shared.context import phrases, query_texts
from icdcoder.shared.messages import SegmentedNote
from tests.fakes import HashingEncoder, NumpyIndex, make_span

ROWS = IndexRows(
    codes=["E11.9", "E11.9", "I10", "Z80.3", "C50.919", "J18.9"],
    texts=[
        "Type 2 diabetes mellitus without complications",
        "Diabetes, type 2",
        "Essential (primary) hypertension",
        "Family history of malignant neoplasm of breast",
        "Malignant neoplasm of breast",
        "Pneumonia, unspecified organism",
    ],
)
DESCRIPTIONS = {
    "E11.9": "Type 2 diabetes mellitus without complications",
    "I10": "Essential (primary) hypertension",
    "Z80.3": "Family history of malignant neoplasm of breast",
    "C50.919": "Malignant neoplasm of unspecified site of unspecified female breast",
    "J18.9": "Pneumonia, unspecified organism",
}


def make_retriever(top_k: int = 3) -> Retriever:
    encoder = HashingEncoder()
    index = NumpyIndex(encoder.encode(ROWS.texts))
    return Retriever(encoder, index, ROWS, DESCRIPTIONS, catalogue_version="test", top_k=top_k)


def test_candidates_ranked_and_collapsed_per_code() -> None:
    text = "Diabetes, type 2. Hypertension."
    note = SegmentedNote(
        note_id="n1",
        text=text,
        spans=[
            make_span("Diabetes, type 2", text, "s0000"),
            make_span("Hypertension", text, "s0001"),
        ],
    )
    out = make_retriever(top_k=3).retrieve(note)
    assert out.catalogue_version == "test" and "retriever" in out.timings
    first = out.items[0].candidates
    assert first[0].code == "E11.9"
    assert first[0].matched == "Diabetes, type 2"  # the better of its two texts
    assert first[0].score > first[1].score
    assert len({c.code for c in first}) == len(first) <= 3
    assert out.items[1].candidates[0].code == "I10"


def test_family_span_is_also_searched_as_family_history() -> None:
    text = "Mother had breast cancer."
    span = make_span("breast cancer", text, family=True)
    assert query_texts(span) == ["breast cancer", "family history of breast cancer"]
    out = make_retriever(top_k=5).retrieve(SegmentedNote(note_id="n2", text=text, spans=[span]))
    assert "Z80.3" in [c.code for c in out.items[0].candidates]


def test_history_query_not_doubled() -> None:
    text = "History of nephrolithiasis."
    span = make_span("History of nephrolithiasis", text, historical=True)
    assert query_texts(span) == ["History of nephrolithiasis"]
    plain = make_span("nephrolithiasis", text, historical=True)
    assert query_texts(plain)[1] == "personal history of nephrolithiasis"


def test_a_long_span_is_also_searched_phrase_by_phrase() -> None:
    text = "Vomiting and several diarrheal stools appear, with persistence of the febrile syndrome"
    assert phrases(text) == ["Vomiting and several diarrheal stools", "the febrile syndrome"]
    assert phrases("persistent febrile syndrome with chills") == []  # five words: searched whole
    assert phrases("type 2 diabetes controlled by conventional medical treatment") == [
        "type 2 diabetes",
        "by conventional medical treatment",
    ]
    # a phrase of function words only is not searched
    assert phrases("a mass was seen in the liver, which was") == ["a mass", "seen in the liver"]
    span = make_span(text, text, historical=True)
    titled = text.replace("febrile", "fever")  # and in the titles' words
    assert query_texts(span) == [text, f"personal history of {text}", *phrases(text), titled]
    # ICDCODER_RETRIEVER__PHRASES=false: the whole span only
    whole = [text, f"personal history of {text}", titled]
    assert query_texts(span, by_phrase=False) == whole
    retriever = make_retriever()
    assert retriever.queries(span) == query_texts(span)
    retriever.phrases = False
    assert retriever.queries(span) == whole


def test_a_span_is_also_searched_in_the_titles_words() -> None:
    text = "Left renal lithiasis."
    span = make_span("Left renal lithiasis", text)
    assert query_texts(span) == ["Left renal lithiasis", "Left kidney calculus"]
    dm = make_span("DM", "DM.")
    assert query_texts(dm) == ["DM", "diabetes mellitus"]
    assert query_texts(
        make_span("Left kidney calculus", text.replace("renal lithiasis", "kidney calculus"))
    ) == ["Left kidney calculus"]


def test_note_without_spans() -> None:
    out = make_retriever().retrieve(SegmentedNote(note_id="n3", text="ok", spans=[]))
    assert out.items == []


def test_notes_retrieved_together_get_what_each_gets_alone() -> None:
    texts = ["Diabetes, type 2. Hypertension.", "Mother had breast cancer.", "Pneumonia."]
    notes = [
        SegmentedNote(note_id="a", text=texts[0], spans=[make_span("Diabetes, type 2", texts[0])]),
        SegmentedNote(note_id="empty", text="ok", spans=[]),
        SegmentedNote(
            note_id="b",
            text=texts[1],
            spans=[make_span("breast cancer", texts[1], family=True)],
        ),
        SegmentedNote(note_id="c", text=texts[2], spans=[make_span("Pneumonia", texts[2])]),
    ]
    retriever = make_retriever(top_k=4)
    together = retriever.retrieve_many(notes)
    assert [n.note_id for n in together] == ["a", "empty", "b", "c"]
    for batched, note in zip(together, notes, strict=True):
        alone = retriever.retrieve(note)
        assert batched.items == alone.items
        assert batched.timings["retriever"] >= 0
    assert together[1].items == []
    assert together[3].items[0].candidates[0].code == "J18.9"


class _Words:
    """A lexical index by shared words (the behaviour :class:`LexicalIndex` has, no BM25)."""

    def __init__(self, texts: list[str]) -> None:
        self.keys = [phrase_key(t) for t in texts]

    def search(self, queries: Sequence[str], k: int) -> list[list[int]]:
        out = []
        for query in queries:
            words = set(phrase_key(query).split())
            shared = [(len(words & set(key.split())), row) for row, key in enumerate(self.keys)]
            ranked = sorted((-n, row) for n, row in shared if n)
            exact = [row for _, row in ranked if self.keys[row] == phrase_key(query)]
            out.append(exact + [row for _, row in ranked if row not in exact][: k - len(exact)])
        return out

    def is_exact(self, row: int, query: str) -> bool:
        return self.keys[row] == phrase_key(query)


class _OneRow:
    """A dense index that only ever finds row 5 (pneumonia): what the words add shows."""

    def __init__(self, vectors: npt.NDArray[np.float32]) -> None:
        self.vectors = vectors

    def search(
        self, queries: npt.NDArray[np.float32], k: int
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        scores = (queries @ self.vectors[5:6].T).astype(np.float32)
        return scores, np.full((len(queries), 1), 5, dtype=np.int64)


def test_lexical_fusion_adds_word_matches_with_their_cosine() -> None:
    encoder = HashingEncoder()
    vectors = encoder.encode(ROWS.texts)
    lexical = Lexical(_Words(list(ROWS.texts)), lambda rows: vectors[list(rows)], k=3)
    text = "Essential hypertension."
    note = SegmentedNote(note_id="n", text=text, spans=[make_span("Essential hypertension", text)])
    dense = Retriever(encoder, _OneRow(vectors), ROWS, DESCRIPTIONS, catalogue_version="t")
    fused = Retriever(
        encoder, _OneRow(vectors), ROWS, DESCRIPTIONS, catalogue_version="t", lexical=lexical
    )
    assert [c.code for c in dense.retrieve(note).items[0].candidates] == ["J18.9"]
    both = fused.retrieve(note).items[0].candidates
    assert both[0].code == "I10" and {c.code for c in both} == {"I10", "J18.9"}
    # the word match's score is its row's cosine, as the dense side would have given it
    expected = float(encoder.encode(["Essential hypertension"])[0] @ vectors[2])
    assert abs(both[0].score - round(expected, 6)) < 1e-6
    assert both[0].matched == "Essential (primary) hypertension"


def test_exact_phrase_ranks_first() -> None:
    encoder = HashingEncoder()
    vectors = encoder.encode(ROWS.texts)
    lexical = Lexical(_Words(list(ROWS.texts)), lambda rows: vectors[list(rows)], k=5)
    retriever = Retriever(
        encoder,
        NumpyIndex(vectors),
        ROWS,
        DESCRIPTIONS,
        catalogue_version="t",
        top_k=3,
        lexical=lexical,
    )
    text = "Malignant neoplasm of breast."
    span = make_span("Malignant neoplasm of breast", text)
    out = retriever.retrieve(SegmentedNote(note_id="n", text=text, spans=[span]))
    assert out.items[0].candidates[0].code == "C50.919"


def test_bm25_lexical_index_on_real_words() -> None:
    texts = [
        "Type 2 diabetes mellitus without complications",
        "Type 1 diabetes mellitus without complications",
        "Paroxysmal atrial fibrillation",
        "Fibrillation, atrial or auricular, paroxysmal",
    ]
    index = LexicalIndex(texts)
    found = index.search(["type 2 diabetes", "atrial fibrillation paroxysmal", "zzqx"], k=4)
    assert found[0][0] == 0  # "2" is a word: type 2 above type 1
    assert set(found[1][:2]) == {2, 3}  # stems and any word order
    assert found[2] == []  # nothing shared: nothing found
    assert index.search(["Paroxysmal  atrial fibrillation."], k=4)[0][0] == 2  # exact first


def test_bm25_batch_scores_are_bm25s_own() -> None:
    """A batch scored as one sparse product ranks each query as bm25s scores it alone."""
    import bm25s

    texts = [
        "Chronic kidney disease, stage 3",
        "Chronic obstructive pulmonary disease with acute exacerbation",
        "Acute kidney failure, unspecified",
        "Kidney stone",
        "Pulmonary embolism",
        "Disease of kidney, chronic, stage 4 (severe)",
    ]
    # "pulmonary pulmonary stone": the repeated word counts twice (row 4 first, not row 3)
    queries = ["acute kidney injury", "pulmonary pulmonary stone", "lung", "pulmonary disease"]
    index = LexicalIndex(texts)
    reference = bm25s.BM25()
    reference.index(index._tokenize(texts), show_progress=False)
    for query, found in zip(queries, index.search(queries, k=3), strict=True):
        scores = reference.get_scores(index._tokenize([query], ids=False)[0] or [""])
        expected = sorted((i for i in range(len(texts)) if scores[i] > 0), key=lambda i: -scores[i])
        assert [scores[i] for i in found] == [scores[i] for i in expected[:3]], query


def test_bm25_index_cached_by_its_texts(tmp_path: Path) -> None:
    texts = ["Paroxysmal atrial fibrillation", "Essential (primary) hypertension"]
    built = LexicalIndex.load_or_build(texts, tmp_path)
    folders = list(tmp_path.glob("bm25-*"))
    assert len(folders) == 1 and (folders[0] / "complete").is_file()
    loaded = LexicalIndex.load_or_build(texts, tmp_path)  # read back, not rebuilt
    assert loaded.search(["atrial fibrillation"], k=2) == built.search(["atrial fibrillation"], k=2)
    assert loaded.search(["hypertension"], k=2) == [[1]]
    LexicalIndex.load_or_build([*texts, "Asthma"], tmp_path)  # other texts: another folder
    assert len(list(tmp_path.glob("bm25-*"))) == 2


def test_bm25_cache_folder_unwritable_still_works(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    index = LexicalIndex.load_or_build(["Essential hypertension"], blocked)
    assert index.search(["hypertension"], k=1) == [[0]]
