"""The composition root: the four stage cores wired into one in-process pipeline.

One :class:`~icdcoder.shared.settings.Settings` and one pack feed every stage, as the bus
workers' ``load`` functions do one stage at a time (``icdcoder/services/<stage>/app.py``).
Every dependency has a default and can be overridden: tests pass a catalogue, a pack or
smaller settings.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from icdcoder.services.aggregator.core import Aggregator
from icdcoder.services.retriever.adapters import retriever_for
from icdcoder.services.retriever.core import Retriever
from icdcoder.services.retriever.vector_cache import ProgressFactory, stderr_progress
from icdcoder.services.segmenter.core import Segmenter
from icdcoder.services.verifier.backends import make_verifier
from icdcoder.services.verifier.core import Verifier
from icdcoder.services.verifier.weights import VerifierWeights
from icdcoder.shared.catalogue import Catalogue
from icdcoder.shared.messages import CodedNote, NoteIn, RetrievedNote, SegmentedNote
from icdcoder.shared.pack import OpenPack, Pack, open_pack
from icdcoder.shared.settings import Settings


@dataclass
class Pipeline:
    segmenter: Segmenter
    retriever: Retriever
    verifier: Verifier
    aggregator: Aggregator
    pack: Pack
    catalogue: Catalogue

    @property
    def catalogue_version(self) -> str:
        return self.catalogue.version

    async def code_note(self, note: NoteIn) -> tuple[CodedNote, RetrievedNote]:
        """Code one note; also returns the retrieval layer (candidates) for evaluation."""
        segmented = self.segmenter.segment(note)
        retrieved = self.retriever.retrieve(segmented)
        verified = await self.verifier.verify(retrieved)
        return self.aggregator.aggregate(verified), retrieved

    async def code(self, note: NoteIn) -> CodedNote:
        coded, _ = await self.code_note(note)
        return coded

    async def code_in_threads(self, note: NoteIn) -> CodedNote:
        """:meth:`code` with the CPU-bound stages in worker threads, so that a server's event
        loop keeps answering while a note is coded (the verifier stays on the loop: the vLLM
        backend's HTTP client belongs to it)."""
        retrieved = await asyncio.to_thread(
            lambda: self.retriever.retrieve(self.segmenter.segment(note))
        )
        verified = await self.verifier.verify(retrieved)
        return await asyncio.to_thread(self.aggregator.aggregate, verified)

    async def code_many(self, notes: Sequence[NoteIn]) -> list[CodedNote | Exception]:
        """Each note's codes, or the error that stopped it (one bad note stops no other).

        The notes' retrieval queries go to the encoder as one batch (full batches however short
        each note is); should that batch fail, each note is retrieved alone, so that only the
        note at fault fails."""
        out: list[CodedNote | Exception] = []
        for coded in await self.code_notes_many(notes):
            out.append(coded if isinstance(coded, Exception) else coded[0])
        return out

    async def code_notes_many(
        self, notes: Sequence[NoteIn]
    ) -> list[tuple[CodedNote, RetrievedNote] | Exception]:
        """:meth:`code_many` with each note's retrieval layer (for evaluation)."""
        out: list[tuple[CodedNote, RetrievedNote] | Exception] = []
        segmented: dict[int, SegmentedNote] = {}
        for i, note in enumerate(notes):
            try:
                segmented[i] = self.segmenter.segment(note)
            except Exception as exc:
                out.append(exc)
            else:
                out.append(_PENDING)
        for i, retrieved in self._retrieve_many(segmented).items():
            try:
                if isinstance(retrieved, Exception):
                    raise retrieved
                verified = await self.verifier.verify(retrieved)
                out[i] = (self.aggregator.aggregate(verified), retrieved)
            except Exception as exc:
                out[i] = exc
        return out

    def _retrieve_many(
        self, segmented: dict[int, SegmentedNote]
    ) -> dict[int, RetrievedNote | Exception]:
        order = list(segmented)
        if len(order) > 1:
            try:
                batch = self.retriever.retrieve_many([segmented[i] for i in order])
                return dict(zip(order, batch, strict=True))
            except Exception:
                pass  # retried one note at a time below: only the note at fault fails
        alone: dict[int, RetrievedNote | Exception] = {}
        for i in order:
            try:
                alone[i] = self.retriever.retrieve(segmented[i])
            except Exception as exc:
                alone[i] = exc
        return alone


#: A note's slot in :meth:`Pipeline.code_notes_many` until its result is known.
_PENDING = RuntimeError("not coded")


def build_pipeline(
    settings: Settings | None = None,
    *,
    opened: OpenPack | None = None,
    catalogue: Catalogue | None = None,
    progress: ProgressFactory | None = stderr_progress,
) -> Pipeline:
    """Every stage from ``settings`` (read from the environment when None) and one pack."""
    settings = settings or Settings()
    opened = opened or open_pack(
        settings.pack,
        catalogue=catalogue,
        cache_dir=settings.cache_dir,
        index=settings.alphabetic_index,
    )
    notes = opened.memory.notes if opened.memory else ()
    weights = VerifierWeights.read(opened.pack.weights_path)
    return Pipeline(
        segmenter=Segmenter(settings.segmenter),
        retriever=retriever_for(opened, settings, progress=progress),
        verifier=make_verifier(settings.verifier, opened.catalogue, weights, notes),
        aggregator=Aggregator(opened.catalogue, settings.aggregator),
        pack=opened.pack,
        catalogue=opened.catalogue,
    )
