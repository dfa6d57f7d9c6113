"""quantise_per_token on a one-product graph: int8 arithmetic, close to the float product, and
each row's result its own whatever the other rows hold."""

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from icdcoder.services.retriever.onnx_encoder import quantise_per_token

RNG = np.random.default_rng(7)
WEIGHT = RNG.normal(size=(16, 8)).astype(np.float32)


def _session() -> ort.InferenceSession:
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "one-product",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "tokens", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "tokens", 8])],
        [numpy_helper.from_array(WEIGHT, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    quantised = quantise_per_token(model)
    onnx.checker.check_model(quantised)
    ops = {node.op_type for node in quantised.graph.node}
    assert "MatMulInteger" in ops and "MatMul" not in ops
    assert {init.name for init in quantised.graph.initializer}.isdisjoint({"w"})
    return ort.InferenceSession(quantised.SerializeToString(), providers=["CPUExecutionProvider"])


def test_the_int8_product_stays_close_to_the_float_one() -> None:
    x = RNG.normal(size=(2, 5, 16)).astype(np.float32)
    (y,) = _session().run(None, {"x": x})
    exact = x @ WEIGHT
    assert y.shape == exact.shape
    assert np.abs(y - exact).max() < 0.02 * np.abs(exact).max()


def test_a_row_is_scaled_alone() -> None:
    session = _session()
    x = RNG.normal(size=(3, 4, 16)).astype(np.float32)
    wide = x.copy()
    wide[1:] *= 1000.0  # batch-mates with a far wider range
    wide[0, 1:] *= 50.0  # and the text's other tokens too
    (y,) = session.run(None, {"x": x})
    (y_wide,) = session.run(None, {"x": wide})
    (y_alone,) = session.run(None, {"x": x[:1, :1]})
    assert np.array_equal(y[0, 0], y_wide[0, 0])
    assert np.array_equal(y[0, 0], y_alone[0, 0])
    assert not np.array_equal(y[1], y_wide[1])
