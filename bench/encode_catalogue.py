"""Encoder throughput: embed every catalogue retrieval text with the pack's model, through
torch (``--device``) or the int8 ONNX encoder (``--encoder onnx-int8``, exported into the cache
folder on first use).

    python -m bench.encode_catalogue [--encoder torch|onnx-int8] [--device auto|cpu|cuda]
        [--texts FILE.tsv] [--limit N]

``--texts`` reads ``code<TAB>text`` lines instead of loading the catalogue (for a machine that
has the model and torch but not the catalogue package, e.g. a GPU box). Prints texts/s and the
top codes for a few queries as a sanity check; asserts nothing.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from icdcoder.services.retriever.adapters import load_encoder
from icdcoder.shared.pack import load_pack
from icdcoder.shared.settings import RetrieverConfig, Settings


def load_texts(path: Path | None) -> tuple[list[str], list[str]]:
    if path is not None:
        rows = [line.rstrip("\n").split("\t", 1) for line in path.open(encoding="utf-8")]
        return [r[0] for r in rows], [r[1] for r in rows]
    from icdcoder.shared.catalogue import load_catalogue

    found = load_catalogue().retrieval_texts(with_index=False)
    return [r.code for r in found], [r.text for r in found]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--encoder", choices=["torch", "onnx-int8"], default="torch")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--texts", type=Path)
    parser.add_argument("--limit", type=int, help="the first N texts only")
    args = parser.parse_args()
    codes, texts = load_texts(args.texts)
    codes, texts = codes[: args.limit], texts[: args.limit]
    settings = Settings()
    config = RetrieverConfig(
        encoder=args.encoder, device=args.device, batch_size=args.batch_size, threads=0
    )
    encoder = load_encoder(
        load_pack(settings.pack, index=settings.alphabetic_index), config, settings.cache_dir
    )
    encoder.encode(texts[:1000])  # warm-up
    started = time.perf_counter()
    vectors = encoder.encode(texts)
    seconds = time.perf_counter() - started
    print(
        f"{encoder.kind}: {len(texts)} texts in {seconds:.2f} s "
        f"({len(texts) / seconds:.0f} texts/s)"
    )
    queries = ["Type 2 diabetes mellitus without complications", "family history of breast cancer"]
    scores = encoder.encode(queries) @ vectors.T
    for query, row in zip(queries, scores, strict=True):
        top = np.argsort(-row)[:3]
        print(f"{query!r}: {[(codes[j], round(float(row[j]), 3)) for j in top]}")


if __name__ == "__main__":
    main()
