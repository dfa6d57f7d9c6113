"""What every verifier is: it reads each span's retrieved candidates and decides, per candidate
it considers, accept / review / reject with a confidence and a one-sentence justification. It can
only choose among the retrieved candidates.

Backends: :mod:`~icdcoder.services.verifier.similarity` (the embedded default) and
:mod:`~icdcoder.services.verifier.vllm_backend` (an LLM served by vLLM);
:func:`icdcoder.services.verifier.backends.make_verifier` picks one from the settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from icdcoder.shared.messages import RetrievedNote, VerifiedNote, VerifierInfo


class Verifier(Protocol):
    @property
    def info(self) -> VerifierInfo: ...

    async def verify(self, note: RetrievedNote) -> VerifiedNote: ...


class NoteVotes(Protocol):
    """What the memory's coded notes say about each code for a note's text: the votes of the
    most similar notes, in [0, 1] (``similar_notes``), or a note classifier's log-odds
    (``note_classifier``)."""

    def votes(self, text: str) -> Mapping[str, float]: ...
