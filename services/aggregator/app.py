"""The aggregator worker: ``verdicts`` -> [aggregator] -> ``codes`` (icdcoder worker aggregator).

``app`` is the ASGI app: health probes and the AsyncAPI document.
"""

from __future__ import annotations

from collections.abc import Mapping

from icdcoder.shared.bus import Process, StageSpec, StageWorker, in_thread
from icdcoder.shared.messages import CodedNote, VerifiedNote
from icdcoder.shared.settings import AggregatorSettings
from icdcoder.shared.streams import STAGES


def load() -> Process[VerifiedNote, CodedNote]:
    from icdcoder.services.aggregator.core import Aggregator
    from icdcoder.shared.catalogue import load_catalogue

    settings = AggregatorSettings()
    return in_thread(Aggregator(load_catalogue(settings.index_csv), settings).aggregate)


def counts(note: CodedNote) -> Mapping[str, int]:
    return {"codes": len(note.codes), "excluded": len(note.excluded)}


SPEC = StageSpec(STAGES["aggregator"], VerifiedNote, CodedNote, load, counts)
worker = StageWorker(SPEC)
app = worker.app
