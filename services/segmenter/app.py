"""The segmenter worker: ``notes`` -> [segmenter] -> ``spans`` (run: ``icdcoder worker segmenter``).

``app`` is the ASGI app: health probes and the AsyncAPI document
(``faststream docs gen icdcoder.services.segmenter.app:app``).
"""

from __future__ import annotations

from collections.abc import Mapping

from icdcoder.shared.bus import Process, StageSpec, StageWorker, in_thread
from icdcoder.shared.messages import NoteIn, SegmentedNote
from icdcoder.shared.settings import SegmenterSettings
from icdcoder.shared.streams import STAGES


def load() -> Process[NoteIn, SegmentedNote]:
    from icdcoder.services.segmenter.core import Segmenter

    return in_thread(Segmenter(SegmenterSettings()).segment)


def counts(note: SegmentedNote) -> Mapping[str, int]:
    return {"spans": len(note.spans)}


SPEC = StageSpec(STAGES["segmenter"], NoteIn, SegmentedNote, load, counts)
worker = StageWorker(SPEC)
app = worker.app
