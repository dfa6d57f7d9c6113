"""The embedding model through ONNX Runtime, int8-quantised: the same vectors as
sentence-transformers, several times faster on a CPU, with no torch import at run time.

:func:`export` turns a sentence-transformers folder (a BERT-style transformer with mean pooling
and normalisation, as all-MiniLM-L6-v2) into ``model.onnx`` with ``torch.onnx`` and quantises
its weights to int8 with ONNX Runtime's ``quantize_dynamic``. It runs once, offline, when the
index is built (``icdcoder index build``), into the cache folder, keyed by the model's
fingerprint. :class:`OnnxEncoder` then reproduces the sentence-transformers pipeline: the
model's own ``tokenizer.json`` (truncation at its ``max_seq_length``), the transformer, the
mean of the token vectors, L2 normalisation.

Each text runs alone, one run a thread on as many threads as the retriever has CPUs. Dynamic
quantisation scales a matrix product's input by the whole input's range: in a batch, a text's
vector depended on the other texts of the batch (the same query, in two batches, came out at a
cosine as low as 0.963, and half the dev notes changed accepted codes with the batch size).
Alone, a text always gets the same vector, no padding enters its scale (mean cosine to the
float32 model 0.9928, against 0.9919 batched), and two single-threaded runs side by side keep
the batched speed (1,012 against 1,057 texts/s on 2 CPUs; docs/throughput.md).

(Kept by hand, about a hundred lines: sentence-transformers' own ONNX backend needs
``optimum-onnx``, which pins an older transformers, and imports torch at start anyway.)
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

from icdcoder.services.retriever.core import Vectors
from icdcoder.shared.pack import model_fingerprint

FILE = "model.int8.onnx"
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def exported_folder(cache_dir: Path, model_path: Path) -> Path:
    return cache_dir / "encoders" / f"{model_fingerprint(model_path)}-int8-matmul"


def max_length(model_path: Path, default: int = 256) -> int:
    config = model_path / "sentence_bert_config.json"
    if config.is_file():
        return int(json.loads(config.read_text()).get("max_seq_length", default))
    return default


def export(model_path: Path, folder: Path) -> Path:
    """Export and quantise the model into ``folder`` (written atomically); returns it."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
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
    # Only the matrix products, one scale per output channel: the default (every op, one scale
    # per tensor) moved vectors to a mean cosine of 0.95 against torch; this keeps 0.99.
    quantize_dynamic(
        str(tmp / "model.onnx"),
        str(tmp / FILE),
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["MatMul"],
        per_channel=True,
    )
    (tmp / "model.onnx").unlink()
    shutil.copyfile(model_path / "tokenizer.json", tmp / "tokenizer.json")
    (tmp / "encoder.json").write_text(
        json.dumps({"max_length": max_length(model_path), "source": model_path.name})
    )
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder


class OnnxEncoder:
    """Encodes texts with an exported model (L2-normalised float32, as the torch encoder), each
    text alone, ``threads`` texts at a time (0: one per CPU this process may use)."""

    kind = "onnx-int8-per-text"

    def __init__(self, folder: Path, model_path: Path, *, threads: int = 0) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        options = ort.SessionOptions()
        # one thread a run: texts run side by side instead (a run is too small to split)
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
        if self._pool is None:  # made on first use, in the process that encodes
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="onnx-encoder")
        return np.stack(list(self._pool.map(self._encode_one, encodings)))

    def _encode_one(self, encoding: Any) -> Vectors:
        """One text's vector: its tokens' mean (no padding: every token counts), normalised."""
        columns = {
            "input_ids": encoding.ids,
            "attention_mask": encoding.attention_mask,
            "token_type_ids": encoding.type_ids,
        }
        feed = {name: np.array([columns[name]], dtype=np.int64) for name in self._inputs}
        (tokens,) = self._session.run(["last_hidden_state"], feed)
        pooled = tokens[0].mean(axis=0)
        vector: Vectors = (pooled / max(float(np.linalg.norm(pooled)), 1e-12)).astype(np.float32)
        return vector
