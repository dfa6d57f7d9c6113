"""The segmenter worker: ``notes`` -> [segmenter] -> ``spans`` (run: ``icdcoder worker segmenter``).

``app`` is the ASGI app: health probes and the AsyncAPI document
(``faststream docs gen services.segmenter.app:app``).
"""

from __future__ import annotations

from collections.abc import Mapping

from shared.bus import Process, StageSpec, StageWorker, in_thread
from shared.messages import NoteIn, SegmentedNote
from shared.settings import SegmenterSettings
from shared.streams import STAGES


def load() -> Process[NoteIn, SegmentedNote]:
    from services.segmenter.core import Segmenter

    return in_thread(Segmenter(SegmenterSettings()).segment)


def counts(note: SegmentedNote) -> Mapping[str, int]:
    return {"spans": len(note.spans)}


SPEC = StageSpec(STAGES["segmenter"], NoteIn, SegmentedNote, load, counts)
worker = StageWorker(SPEC)
app = worker.app
