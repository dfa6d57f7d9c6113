"""The segmenter worker: ``notes`` -> [segmenter] -> ``spans`` (``icdcoder worker segmenter``)."""

from __future__ import annotations

from collections.abc import Mapping

from icdcoder.shared.bus.stage import LoadedStage, StageSpec
from icdcoder.shared.cancel import in_thread
from icdcoder.shared.messages import NoteIn, SegmentedNote
from icdcoder.shared.settings import Settings
from icdcoder.shared.streams import STAGES


def load(settings: Settings) -> LoadedStage[NoteIn, SegmentedNote]:
    from icdcoder.services.segmenter.core import Segmenter

    return LoadedStage(in_thread(Segmenter(settings.segmenter).segment))


def counts(note: SegmentedNote) -> Mapping[str, int]:
    return {"spans": len(note.spans)}


SPEC = StageSpec(STAGES["segmenter"], NoteIn, SegmentedNote, load, counts)
