from icdcoder.services.retriever.core import IndexRows, Retriever
from icdcoder.shared.context import query_texts
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
