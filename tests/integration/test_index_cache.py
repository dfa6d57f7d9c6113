"""The FAISS index cache with the real model on a tiny catalogue: keyed, reused, self-healing."""

from pathlib import Path

import pytest

from icdcoder.services.retriever.encoder import SentenceTransformerEncoder
from icdcoder.services.retriever.vector_cache import load_or_build_index
from icdcoder.shared.catalogue import Catalogue, CodeInfo
from icdcoder.shared.pack import load_pack

pytestmark = pytest.mark.slow


def tiny_catalogue(extra: str = "") -> Catalogue:
    def info(code: str, description: str) -> CodeInfo:
        return CodeInfo(code, description, True, None, (), "4", "E08-E13")

    codes = {
        "E11.9": info("E11.9", "Type 2 diabetes mellitus without complications"),
        "I10": info("I10", "Essential (primary) hypertension" + extra),
        "J18.9": info("J18.9", "Pneumonia, unspecified organism"),
    }
    return Catalogue(version="tiny", codes=codes)


@pytest.fixture(scope="module")
def encoder() -> SentenceTransformerEncoder:
    return SentenceTransformerEncoder(load_pack().model_path(), device="cpu")


def test_build_reuse_rebuild(tmp_path: Path, encoder: SentenceTransformerEncoder) -> None:
    first = load_or_build_index(tiny_catalogue(), encoder, tmp_path, progress=None)
    assert first.built and first.index.size == 3
    again = load_or_build_index(tiny_catalogue(), encoder, tmp_path, progress=None)
    assert not again.built and again.directory == first.directory

    query = encoder.encode(["high blood pressure"])
    scores, ids = again.index.search(query, 3)
    assert again.rows.codes[int(ids[0][0])] == "I10"
    assert scores[0][0] > scores[0][1]

    (first.directory / "index.faiss").write_bytes(b"garbage")
    healed = load_or_build_index(tiny_catalogue(), encoder, tmp_path, progress=None)
    assert healed.built and healed.index.size == 3

    changed = load_or_build_index(tiny_catalogue(" NOS"), encoder, tmp_path, progress=None)
    assert changed.built and changed.directory != first.directory


def test_a_pack_s_prebuilt_vectors_are_used_when_their_key_matches(
    tmp_path: Path, encoder: SentenceTransformerEncoder
) -> None:
    built = load_or_build_index(tiny_catalogue(), encoder, tmp_path / "a", progress=None)
    pack_vectors = tmp_path / "pack-vectors"
    built.directory.rename(pack_vectors)
    reused = load_or_build_index(
        tiny_catalogue(), encoder, tmp_path / "b", prebuilt=pack_vectors, progress=None
    )
    assert not reused.built and reused.directory == pack_vectors
    other = load_or_build_index(
        tiny_catalogue(" NOS"), encoder, tmp_path / "b", prebuilt=pack_vectors, progress=None
    )
    assert other.built and other.directory != pack_vectors  # another key: not the pack's


def test_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no sentence-transformers model"):
        SentenceTransformerEncoder(tmp_path)
