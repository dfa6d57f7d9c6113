"""The embedding model through ONNX Runtime, int8-quantised: the same vectors as
sentence-transformers, several times faster on a CPU, with no torch import at run time.

:func:`export` turns a sentence-transformers folder (a BERT-style transformer with mean pooling
and normalisation, as all-MiniLM-L6-v2) into ``model.onnx`` with ``torch.onnx`` and quantises
its matrix products to int8 (:func:`quantise_per_token`). It runs once, offline, when the index
is built (``icdcoder index build``), into the cache folder, keyed by the model's fingerprint.
:class:`OnnxEncoder` then reproduces the sentence-transformers pipeline: the model's own
``tokenizer.json`` (truncation at its ``max_seq_length``), the transformer, the mean of the
token vectors, L2 normalisation.

A text's vector never depends on what else is encoded with it. ONNX Runtime's dynamic
quantisation scales a matrix product's input by the whole input's range: in a batch, a text's
vector depended on its batch-mates (the same query, in two batches, came out at a cosine as low
as 0.963, and half the dev notes changed accepted codes with the batch size; stop 28), so stop
28 ran each text alone, at the price of reading every weight once per text. Here each token
gets its own scale instead (:func:`quantise_per_token`), and the texts of a call run in
batches of texts with the same number of tokens, so no padding enters a batch: a token's
arithmetic is then the same whatever shares its batch, and texts are batched again
(docs/throughput.md, stop 29).

(Kept by hand, about a hundred and fifty lines: sentence-transformers' own ONNX backend needs
``optimum-onnx``, which pins an older transformers, and imports torch at start anyway; ONNX
Runtime's quantisers scale a matrix product's input per tensor only.)
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from icdcoder.services.retriever.core import Vectors
from icdcoder.shared.pack import model_fingerprint

FILE = "model.int8.onnx"
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
#: Texts per run at most (texts of one length; more of them make several runs).
GROUP = 64


def exported_folder(cache_dir: Path, model_path: Path) -> Path:
    return cache_dir / "encoders" / f"{model_fingerprint(model_path)}-int8-per-token"


def max_length(model_path: Path, default: int = 256) -> int:
    config = model_path / "sentence_bert_config.json"
    if config.is_file():
        return int(json.loads(config.read_text()).get("max_seq_length", default))
    return default


def export(model_path: Path, folder: Path) -> Path:
    """Export and quantise the model into ``folder`` (written atomically); returns it."""
    import onnx
    import torch
    from transformers import AutoModel

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)

    class Tokens(torch.nn.Module):
        """The transformer's token vectors, its inputs by name (as ONNX sees them)."""

        def __init__(self) -> None:
            super().__init__()
            self.transformer = AutoModel.from_pretrained(str(model_path)).eval()
            self.transformer.requires_grad_(False)

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.transformer(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    example = {name: torch.ones((1, 8), dtype=torch.long) for name in INPUTS}
    axes = {name: {0: "batch", 1: "tokens"} for name in INPUTS}
    with torch.no_grad():
        torch.onnx.export(
            Tokens(),
            (example["input_ids"], example["attention_mask"], example["token_type_ids"]),
            str(tmp / "model.onnx"),
            input_names=list(INPUTS),
            output_names=["last_hidden_state"],
            dynamic_axes={**axes, "last_hidden_state": {0: "batch", 1: "tokens"}},
            opset_version=17,
            dynamo=False,
        )
    onnx.save(quantise_per_token(onnx.load(str(tmp / "model.onnx"))), str(tmp / FILE))
    (tmp / "model.onnx").unlink()
    shutil.copyfile(model_path / "tokenizer.json", tmp / "tokenizer.json")
    (tmp / "encoder.json").write_text(
        json.dumps({"max_length": max_length(model_path), "source": model_path.name})
    )
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder


def quantise_per_token(model: Any) -> Any:
    """``model`` (an ``onnx.ModelProto``, changed in place) with each matrix product by a
    constant weight in int8: the weight with one scale per output column, the input with one
    scale per token (row), both symmetric.

    Per token, ``x`` becomes ``round(x / s) + 128`` in uint8 with ``s = max|x| / 127`` over the
    token's features; ``MatMulInteger`` (input zero point 128) multiplies it by the int8 weight
    exactly in int32, and the product is scaled back by ``s`` and the column's scale. Only
    standard ONNX operators: ONNX Runtime's own dynamic quantisation (``DynamicQuantizeLinear``)
    takes one scale for the whole input, which made a text's vector depend on its batch-mates.
    """
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    weights = {init.name: init for init in graph.initializer}
    shared: dict[str, npt.NDArray[Any]] = {
        "pt_eps": np.array(1e-12, np.float32),
        "pt_127": np.array(127.0, np.float32),
        "pt_128": np.array(128.0, np.float32),
        "pt_zero": np.array(128, np.uint8),
    }
    nodes: list[Any] = []
    for node in graph.node:
        weight = weights.get(node.input[1]) if node.op_type == "MatMul" else None
        if weight is None or len(weight.dims) != 2:
            nodes.append(node)
            continue
        x, p = node.input[0], f"pt{len(shared)}_"
        w = numpy_helper.to_array(weight).astype(np.float32)
        w_scale = np.maximum(np.abs(w).max(axis=0), 1e-12) / 127.0
        shared[p + "w"] = np.clip(np.round(w / w_scale), -127, 127).astype(np.int8)
        shared[p + "w_scale"] = w_scale.astype(np.float32)
        nodes += [
            helper.make_node("Abs", [x], [p + "abs"]),
            helper.make_node("ReduceMax", [p + "abs"], [p + "max"], axes=[-1], keepdims=1),
            helper.make_node("Max", [p + "max", "pt_eps"], [p + "range"]),
            helper.make_node("Div", [p + "range", "pt_127"], [p + "scale"]),
            helper.make_node("Div", [x, p + "scale"], [p + "scaled"]),
            helper.make_node("Round", [p + "scaled"], [p + "rounded"]),
            helper.make_node("Add", [p + "rounded", "pt_128"], [p + "shifted"]),
            helper.make_node("Cast", [p + "shifted"], [p + "q"], to=TensorProto.UINT8),
            helper.make_node("MatMulInteger", [p + "q", p + "w", "pt_zero"], [p + "int32"]),
            helper.make_node("Cast", [p + "int32"], [p + "float"], to=TensorProto.FLOAT),
            helper.make_node("Mul", [p + "float", p + "scale"], [p + "rescaled"]),
            helper.make_node("Mul", [p + "rescaled", p + "w_scale"], list(node.output)),
        ]
    # the float weights go, unless another node still reads one
    read = {name for node in nodes for name in node.input}
    kept = [init for init in graph.initializer if init.name in read]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(kept)
    graph.initializer.extend(numpy_helper.from_array(v, name) for name, v in shared.items())
    return model


class OnnxEncoder:
    """Encodes texts with an exported model (L2-normalised float32, as the torch encoder): the
    texts of a call in batches of one token count (:data:`GROUP` at most), ``threads`` batches
    at a time (0: one per CPU this process may use)."""

    kind = "onnx-int8-per-token"

    def __init__(self, folder: Path, model_path: Path, *, threads: int = 0) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        options = ort.SessionOptions()
        # one thread a run: batches run side by side instead (a run is too small to split)
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(
            str(folder / FILE), options, providers=["CPUExecutionProvider"]
        )
        config = json.loads((folder / "encoder.json").read_text())
        self._tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._tokenizer.enable_truncation(int(config["max_length"]))
        self._tokenizer.no_padding()
        self._inputs = [i.name for i in self._session.get_inputs()]
        self.model_path = model_path  # the model's identity, for cache keys
        self.threads = threads or len(os.sched_getaffinity(0))
        self.device = "cpu"
        self._pool: ThreadPoolExecutor | None = None
        self._dimension: int | None = None

    @property
    def dimension(self) -> int:
        if self._dimension is None:
            self._dimension = int(self.encode(["dimension"]).shape[1])
        return self._dimension

    def encode(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self._dimension or 0), dtype=np.float32)
        encodings = self._tokenizer.encode_batch(list(texts))
        by_length: dict[int, list[int]] = {}
        for i, encoding in enumerate(encodings):
            by_length.setdefault(len(encoding.ids), []).append(i)
        runs = [
            rows[start : start + GROUP]
            for rows in by_length.values()
            for start in range(0, len(rows), GROUP)
        ]
        if self._pool is None:  # made on first use, in the process that encodes
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="onnx-encoder")
        done = list(self._pool.map(lambda rows: self._run([encodings[i] for i in rows]), runs))
        vectors: Vectors = np.empty((len(texts), done[0].shape[1]), dtype=np.float32)
        for rows, run in zip(runs, done, strict=True):
            vectors[rows] = run
        return vectors

    def _run(self, encodings: Sequence[Any]) -> Vectors:
        """Texts of one token count: their tokens' means (no padding: every token counts),
        normalised."""
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        columns = {
            "input_ids": ids,
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }
        (tokens,) = self._session.run(
            ["last_hidden_state"], {name: columns[name] for name in self._inputs}
        )
        pooled = tokens.mean(axis=1)
        norms = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        vectors: Vectors = (pooled / norms).astype(np.float32)
        return vectors
