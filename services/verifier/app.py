"""The verifier worker: ``candidates`` -> [verifier] -> ``verdicts`` (``icdcoder worker verifier``).

The backend (similarity or vLLM) comes from ``ICDCODER_VERIFIER__BACKEND``. A message made
with another pack waits for a verifier of that pack (and is dead-lettered if none comes); one
whose candidates are not codes of the catalogue is refused.
"""

from __future__ import annotations

from collections.abc import Mapping

from icdcoder.shared.bus.stage import LoadedStage, StageSpec
from icdcoder.shared.catalogue import Catalogue
from icdcoder.shared.messages import RetrievedNote, VerifiedNote
from icdcoder.shared.pack import open_pack
from icdcoder.shared.settings import Settings
from icdcoder.shared.streams import STAGES


def check_candidates(note: RetrievedNote, catalogue: Catalogue) -> None:
    """Raise ``ValueError`` naming the candidate codes the catalogue does not have."""
    unknown = sorted(
        {c.code for item in note.items for c in item.candidates if c.code not in catalogue.codes}
    )
    if unknown:
        raise ValueError(f"candidates not in the catalogue: {', '.join(unknown[:10])}")


def load(settings: Settings) -> LoadedStage[RetrievedNote, VerifiedNote]:
    from icdcoder.services.verifier.backends import make_verifier
    from icdcoder.services.verifier.weights import VerifierWeights

    opened = open_pack(settings.pack, cache_dir=settings.cache_dir, index=settings.alphabetic_index)
    notes = opened.memory.notes if opened.memory else ()
    weights = VerifierWeights.read(opened.pack.weights_path)
    verifier = make_verifier(
        settings.verifier,
        opened.catalogue,
        weights,
        notes,
        negated_for_review=settings.negated_for_review,
    )

    async def verify(note: RetrievedNote) -> VerifiedNote:
        check_candidates(note, opened.catalogue)
        return await verifier.verify(note)

    return LoadedStage(verify, pack=opened.pack.id)


def counts(note: VerifiedNote) -> Mapping[str, int]:
    decisions = [verdict.decision for verdict in note.verdicts]
    return {
        "candidates": sum(len(item.candidates) for item in note.items),
        "accepted": decisions.count("accept"),
        "review": decisions.count("review"),
        "prompt_tokens": note.verifier.prompt_tokens,
        "completion_tokens": note.verifier.completion_tokens,
    }


SPEC = StageSpec(STAGES["verifier"], RetrievedNote, VerifiedNote, load, counts, checks_pack=True)
