"""The int8 ONNX encoder with the real model: a text's vector is its own, whatever shares the
call (texts of one token count run as one batch), and stays close to the float32 model's."""

from pathlib import Path

import numpy as np
import pytest

from icdcoder.services.retriever.adapters import load_encoder
from icdcoder.services.retriever.encoder import SentenceTransformerEncoder
from icdcoder.services.retriever.onnx_encoder import GROUP, OnnxEncoder
from icdcoder.shared.pack import load_pack
from icdcoder.shared.settings import RetrieverConfig, Settings

pytestmark = pytest.mark.slow

TEXTS = [
    "Type 2 diabetes mellitus without complications",
    "fever",
    "displaced fracture of the right femoral neck after a fall from standing height",
    "hypertension",
    "a 76-year-old patient, without known allergies",
]


@pytest.fixture(scope="module")
def onnx() -> OnnxEncoder:
    encoder = load_encoder(
        load_pack(), RetrieverConfig(encoder="onnx-int8", threads=2), Settings().cache_dir
    )
    assert isinstance(encoder, OnnxEncoder)
    return encoder


def test_a_text_gets_the_same_vector_whatever_shares_the_call(onnx: OnnxEncoder) -> None:
    together = onnx.encode(TEXTS)
    alone = np.concatenate([onnx.encode([text]) for text in TEXTS])
    reversed_ = onnx.encode(TEXTS[::-1])[::-1]
    # a long text beside a short one used to widen the short one's quantisation scale
    with_others = onnx.encode([TEXTS[1], "x " * 200, TEXTS[3]])
    assert together.dtype == np.float32 and together.shape == (len(TEXTS), 384)
    assert np.array_equal(together, alone)
    assert np.array_equal(together, reversed_)
    assert np.array_equal(with_others[[0, 2]], together[[1, 3]])
    assert np.allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)


def test_texts_of_one_length_batched_together_keep_their_own_vectors(onnx: OnnxEncoder) -> None:
    # more texts of one token count than one run takes, all with "fever": the run's other
    # tokens (and the run it falls in) must not move its vector
    same_length = [f"fever day {n}" for n in range(GROUP + 10)]
    lengths = {len(onnx._tokenizer.encode(text).ids) for text in [*same_length, "fever day 7"]}
    assert len(lengths) == 1
    batched = onnx.encode(same_length)
    assert np.array_equal(batched[7], onnx.encode(["fever day 7"])[0])
    assert np.array_equal(batched[GROUP + 3], onnx.encode(["fever day 67"])[0])
    assert np.array_equal(batched[:GROUP], onnx.encode(same_length[:GROUP][::-1])[::-1])
    assert len({row.tobytes() for row in batched}) == len(same_length)


def test_the_vectors_stay_close_to_the_float32_model(onnx: OnnxEncoder) -> None:
    exact = SentenceTransformerEncoder(Path(load_pack().model_path()), device="cpu").encode(TEXTS)
    cosines = (onnx.encode(TEXTS) * exact).sum(axis=1)
    assert cosines.min() > 0.97, cosines


def test_no_texts_no_vectors(onnx: OnnxEncoder) -> None:
    assert onnx.encode([]).shape[0] == 0
