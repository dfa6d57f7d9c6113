"""The aggregator worker: ``verdicts`` -> [aggregator] -> ``codes`` (icdcoder worker aggregator)."""

from __future__ import annotations

from collections.abc import Mapping

from icdcoder.shared.bus.stage import LoadedStage, StageSpec
from icdcoder.shared.cancel import in_thread
from icdcoder.shared.messages import CodedNote, VerifiedNote
from icdcoder.shared.pack import open_pack
from icdcoder.shared.settings import Settings
from icdcoder.shared.streams import STAGES


def load(settings: Settings) -> LoadedStage[VerifiedNote, CodedNote]:
    from icdcoder.services.aggregator.core import Aggregator

    opened = open_pack(settings.pack, cache_dir=settings.cache_dir, index=settings.alphabetic_index)
    aggregator = Aggregator(
        opened.catalogue, settings.aggregator, negated_for_review=settings.negated_for_review
    )
    return LoadedStage(in_thread(aggregator.aggregate), pack=opened.pack.id)


def counts(note: CodedNote) -> Mapping[str, int]:
    return {"codes": len(note.codes), "excluded": len(note.excluded)}


SPEC = StageSpec(STAGES["aggregator"], VerifiedNote, CodedNote, load, counts, checks_pack=True)
