"""The in-process pipeline over several notes: one batch for retrieval, one failure per bad note."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from icdcoder.bootstrap import Pipeline
from icdcoder.services.retriever.core import Retriever
from icdcoder.shared.messages import (
    CodedNote,
    NoteIn,
    RetrievedNote,
    SegmentedNote,
    VerifierInfo,
)
from tests.fakes import make_span
from tests.unit.test_retriever_core import make_retriever


class Segmenter:
    def segment(self, note: NoteIn) -> SegmentedNote:
        if note.note_id == "unsegmentable":
            raise ValueError("cannot segment")
        word = note.text.split()[0]
        return SegmentedNote(
            note_id=note.note_id, text=note.text, spans=[make_span(word, note.text)]
        )


class CountingRetriever:
    """The real core, counting batches; fails on notes named ``poison``."""

    def __init__(self, inner: Retriever) -> None:
        self.inner = inner
        self.batches: list[int] = []

    def retrieve(self, note: SegmentedNote) -> RetrievedNote:
        return self.retrieve_many([note])[0]

    def retrieve_many(self, notes: Sequence[SegmentedNote]) -> list[RetrievedNote]:
        self.batches.append(len(notes))
        if any(n.note_id == "poison" for n in notes):
            raise RuntimeError("poisoned batch")
        return self.inner.retrieve_many(notes)


class Verifier:
    async def verify(self, note: RetrievedNote) -> Any:
        return note


class Aggregator:
    def aggregate(self, note: RetrievedNote) -> CodedNote:
        return CodedNote(
            note_id=note.note_id,
            catalogue_version=note.catalogue_version,
            codes=[],
            excluded=[],
            verifier=VerifierInfo(backend="fake"),
        )


def _pipeline(retriever: CountingRetriever) -> Pipeline:
    return Pipeline(
        segmenter=Segmenter(),  # type: ignore[arg-type]
        retriever=retriever,  # type: ignore[arg-type]
        verifier=Verifier(),  # type: ignore[arg-type]
        aggregator=Aggregator(),  # type: ignore[arg-type]
        pack=None,  # type: ignore[arg-type]
        catalogue=None,  # type: ignore[arg-type]
    )


async def test_notes_are_retrieved_as_one_batch() -> None:
    retriever = CountingRetriever(make_retriever())
    notes = [NoteIn(note_id=f"n{i}", text=t) for i, t in enumerate(["Pneumonia.", "Hypertension."])]
    results = await _pipeline(retriever).code_notes_many(notes)
    assert retriever.batches == [2]
    assert [r[0].note_id for r in results if not isinstance(r, Exception)] == ["n0", "n1"]
    first = results[0]
    assert not isinstance(first, Exception)
    assert first[1].items[0].candidates[0].code == "J18.9"


async def test_a_bad_note_fails_alone() -> None:
    retriever = CountingRetriever(make_retriever())
    notes = [
        NoteIn(note_id="n0", text="Pneumonia."),
        NoteIn(note_id="unsegmentable", text="Hypertension."),
        NoteIn(note_id="poison", text="Hypertension."),
        NoteIn(note_id="n3", text="Hypertension."),
    ]
    results = await _pipeline(retriever).code_many(notes)
    assert isinstance(results[1], ValueError)
    assert isinstance(results[2], RuntimeError)
    assert [r.note_id for r in results if isinstance(r, CodedNote)] == ["n0", "n3"]
    assert retriever.batches == [3, 1, 1, 1]  # the batch failed: each note alone


async def test_batches_are_coded_in_order_the_next_one_retrieved_ahead() -> None:
    retriever = CountingRetriever(make_retriever())
    read: list[int] = []

    def batches() -> Any:
        for b, texts in enumerate([["Pneumonia.", "Hypertension."], [], ["Hypertension."]]):
            read.append(b)
            yield [NoteIn(note_id=f"b{b}n{i}", text=t) for i, t in enumerate(texts)]
        read.append(-1)  # the end, read ahead too
        yield [NoteIn(note_id="poison", text="Pneumonia."), NoteIn(note_id="b4", text="Gout.")]

    coded = []
    async for results in _pipeline(retriever).code_batches(batches()):
        # the batch after this one has been read already (its retrieval is under way)
        assert len(read) == len(coded) + 2 or read[-1] == -1
        coded.append([r.note_id if isinstance(r, CodedNote) else type(r).__name__ for r in results])
    assert coded == [["b0n0", "b0n1"], [], ["b2n0"], ["RuntimeError", "b4"]]
    assert retriever.batches == [2, 1, 2, 1, 1]  # the last batch failed: each note alone
