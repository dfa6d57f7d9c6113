"""The verifier worker: ``candidates`` -> [verifier] -> ``verdicts`` (``icdcoder worker verifier``).

The backend (similarity or vLLM) comes from ``ICDCODER_BACKEND``. ``app`` is the ASGI app:
health probes and the AsyncAPI document.
"""

from __future__ import annotations

from collections.abc import Mapping

from icdcoder.shared.bus import Process, StageSpec, StageWorker
from icdcoder.shared.messages import RetrievedNote, VerifiedNote
from icdcoder.shared.settings import CatalogueSettings, VerifierSettings
from icdcoder.shared.streams import STAGES


def load() -> Process[RetrievedNote, VerifiedNote]:
    from icdcoder.services.verifier.backends import make_verifier
    from icdcoder.shared.catalogue import load_catalogue

    catalogue = load_catalogue(CatalogueSettings().index_csv)
    return make_verifier(VerifierSettings(), catalogue).verify


def counts(note: VerifiedNote) -> Mapping[str, int]:
    decisions = [verdict.decision for verdict in note.verdicts]
    return {
        "candidates": sum(len(item.candidates) for item in note.items),
        "accepted": decisions.count("accept"),
        "review": decisions.count("review"),
        "prompt_tokens": note.verifier.prompt_tokens,
        "completion_tokens": note.verifier.completion_tokens,
    }


SPEC = StageSpec(STAGES["verifier"], RetrievedNote, VerifiedNote, load, counts)
worker = StageWorker(SPEC)
app = worker.app
