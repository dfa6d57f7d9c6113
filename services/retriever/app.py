"""The retriever worker: ``spans`` -> [retriever] -> ``candidates`` (``icdcoder worker retriever``).

The pack's embedding model and the catalogue's vector index load once, at startup (the index
is built if neither the pack nor the cache has it).
"""

from __future__ import annotations

from collections.abc import Mapping

from icdcoder.shared.bus.stage import LoadedStage, StageSpec
from icdcoder.shared.cancel import in_thread
from icdcoder.shared.messages import RetrievedNote, SegmentedNote
from icdcoder.shared.pack import open_pack
from icdcoder.shared.settings import Settings
from icdcoder.shared.streams import STAGES


def load(settings: Settings) -> LoadedStage[SegmentedNote, RetrievedNote]:
    from icdcoder.services.retriever.adapters import retriever_for

    opened = open_pack(settings.pack, cache_dir=settings.cache_dir, index=settings.alphabetic_index)
    retriever = retriever_for(opened, settings)
    return LoadedStage(in_thread(retriever.retrieve), pack=opened.pack.id)


def counts(note: RetrievedNote) -> Mapping[str, int]:
    return {
        "spans": len(note.items),
        "candidates": sum(len(item.candidates) for item in note.items),
    }


SPEC = StageSpec(STAGES["retriever"], SegmentedNote, RetrievedNote, load, counts)
