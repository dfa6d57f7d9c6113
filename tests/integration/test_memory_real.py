"""The example memory with the real model: embedded once, cached, and changing what is found."""

from pathlib import Path

import pytest

from icdcoder.services.retriever.adapters import example_index
from icdcoder.services.retriever.core import Retriever
from icdcoder.services.retriever.encoder import SentenceTransformerEncoder
from icdcoder.services.retriever.vector_cache import load_or_build_index
from icdcoder.shared.catalogue import Catalogue, CodeInfo
from icdcoder.shared.memory import Example, load_memory, write_examples
from icdcoder.shared.messages import SegmentedNote
from icdcoder.shared.pack import load_pack
from tests.fakes import make_span

pytestmark = pytest.mark.slow


def catalogue() -> Catalogue:
    def info(code: str, description: str) -> CodeInfo:
        return CodeInfo(code, description, True, None, (), "18", "R50-R69")

    codes = {
        "R59.9": info("R59.9", "Enlarged lymph nodes, unspecified"),
        "R52": info("R52", "Pain, unspecified"),
        "I10": info("I10", "Essential (primary) hypertension"),
        "E11.9": info("E11.9", "Type 2 diabetes mellitus without complications"),
    }
    return Catalogue(version="tiny", codes=codes)


def test_memory_is_cached_and_votes_for_its_codes(tmp_path: Path) -> None:
    encoder = SentenceTransformerEncoder(load_pack().model_path(), device="cpu")
    memory_file = tmp_path / "memory.jsonl"
    write_examples(
        memory_file,
        [
            Example(code="R59.9", text="multiple adenopathies", source="t:1"),
            Example(code="R59.9", text="adenopathy", source="t:2"),
            Example(code="I10", text="HTA", source="t:3"),
            Example(code="X00.0", text="a retired code", source="t:4"),
        ],
    )
    cat = catalogue()
    loaded = load_memory(memory_file, cat)
    assert loaded.dropped_codes == ("X00.0",)
    memory = example_index(loaded, encoder, tmp_path / "cache", neighbours=10)
    assert list(memory.rows.codes) == ["R59.9", "R59.9", "I10"]
    assert len(list((tmp_path / "cache").glob("memory-*.npy"))) == 1  # cached for next time

    bundle = load_or_build_index(cat, encoder, tmp_path / "cache", progress=None)
    descriptions = {code: info.description for code, info in cat.codes.items()}
    text = "CT showed several adenopathies."
    note = SegmentedNote(note_id="n", text=text, spans=[make_span("several adenopathies", text)])

    def first(with_memory: bool) -> tuple[str, int]:
        retriever = Retriever(
            encoder,
            bundle.index,
            bundle.rows,
            descriptions,
            catalogue_version=cat.version,
            top_k=4,
            memory=memory if with_memory else None,
        )
        best = retriever.retrieve(note).items[0].candidates[0]
        return best.code, best.memory_votes

    assert first(with_memory=True) == ("R59.9", 2)
    assert first(with_memory=False)[1] == 0
