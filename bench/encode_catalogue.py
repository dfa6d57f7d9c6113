"""Encoder throughput: embed every catalogue retrieval text with the configured model and device.

    python bench/encode_catalogue.py [--model DIR] [--device auto|cpu|cuda] [--texts FILE.tsv]

``--texts`` reads ``code<TAB>text`` lines instead of loading the catalogue (for a machine that
has the model and torch but not the catalogue package, e.g. a GPU box). Prints texts/s and the
top codes for a few queries as a sanity check; asserts nothing.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from icdcoder.services.retriever.adapters import SentenceTransformerEncoder, default_model_path


def load_texts(path: Path | None) -> tuple[list[str], list[str]]:
    if path is not None:
        rows = [line.rstrip("\n").split("\t", 1) for line in path.open(encoding="utf-8")]
        return [r[0] for r in rows], [r[1] for r in rows]
    from icdcoder.shared.catalogue import load_catalogue

    found = load_catalogue().retrieval_texts(with_index=False)
    return [r.code for r in found], [r.text for r in found]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--texts", type=Path)
    args = parser.parse_args()
    codes, texts = load_texts(args.texts)
    encoder = SentenceTransformerEncoder(
        args.model or default_model_path(), device=args.device, batch_size=args.batch_size
    )
    encoder.encode(texts[:1000])  # warm-up
    started = time.perf_counter()
    vectors = encoder.encode(texts)
    seconds = time.perf_counter() - started
    print(
        f"device {encoder.device}: {len(texts)} texts in {seconds:.2f} s "
        f"({len(texts) / seconds:.0f} texts/s)"
    )
    queries = ["Type 2 diabetes mellitus without complications", "family history of breast cancer"]
    scores = encoder.encode(queries) @ vectors.T
    for query, row in zip(queries, scores, strict=True):
        top = np.argsort(-row)[:3]
        print(f"{query!r}: {[(codes[j], round(float(row[j]), 3)) for j in top]}")


if __name__ == "__main__":
    main()
