"""The retriever worker: ``spans`` -> [retriever] -> ``candidates`` (``icdcoder worker retriever``).

The embedding model and the FAISS index load once, at startup (the index must have been built:
``icdcoder index build``). ``app`` is the ASGI app: health probes and the AsyncAPI document.
"""

from __future__ import annotations

from collections.abc import Mapping

from icdcoder.shared.bus import Process, StageSpec, StageWorker, in_thread
from icdcoder.shared.messages import RetrievedNote, SegmentedNote
from icdcoder.shared.settings import RetrieverSettings
from icdcoder.shared.streams import STAGES


def load() -> Process[SegmentedNote, RetrievedNote]:
    from icdcoder.services.retriever.adapters import load_retriever

    return in_thread(load_retriever(RetrieverSettings(), progress=None).retrieve)


def counts(note: RetrievedNote) -> Mapping[str, int]:
    return {
        "spans": len(note.items),
        "candidates": sum(len(item.candidates) for item in note.items),
    }


SPEC = StageSpec(STAGES["retriever"], SegmentedNote, RetrievedNote, load, counts)
worker = StageWorker(SPEC)
app = worker.app
