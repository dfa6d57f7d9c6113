"""The composition root: the four stage cores wired into one in-process pipeline.

One :class:`~icdcoder.shared.settings.Settings` and one pack feed every stage, as the bus
workers' ``load`` functions do one stage at a time (``icdcoder/services/<stage>/app.py``).
Every dependency has a default and can be overridden: tests pass a catalogue, a pack or
smaller settings.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
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
        return _codes(await self.code_notes_many(notes))

    async def code_notes_many(
        self, notes: Sequence[NoteIn]
    ) -> list[tuple[CodedNote, RetrievedNote] | Exception]:
        """:meth:`code_many` with each note's retrieval layer (for evaluation)."""
        return await self._judge(self._retrieve_batch(notes))

    async def code_batches(
        self, batches: Iterable[Sequence[NoteIn]]
    ) -> AsyncIterator[list[CodedNote | Exception]]:
        """:meth:`code_many` of each batch, in order, the next batch segmented and retrieved
        in a worker thread while this one is verified and aggregated on the event loop.

        The encoder and the vector search release the GIL, so the two overlap on two CPUs (the
        rest is Python, which takes turns). ``batches`` is read one batch ahead."""
        loop = asyncio.get_running_loop()
        pending = iter(batches)

        def ahead(batch: Sequence[NoteIn]) -> asyncio.Future[list[RetrievedNote | Exception]]:
            # in a copy of this context, as asyncio.to_thread: cancellation reaches it
            call = contextvars.copy_context().run
            return loop.run_in_executor(pool, call, self._retrieve_batch, batch)

        with ThreadPoolExecutor(1, thread_name_prefix="retrieve") as pool:
            batch = next(pending, None)
            retrieving = None if batch is None else ahead(batch)
            while retrieving is not None:
                retrieved = await retrieving
                batch = next(pending, None)
                retrieving = None if batch is None else ahead(batch)
                yield _codes(await self._judge(retrieved))

    def _retrieve_batch(self, notes: Sequence[NoteIn]) -> list[RetrievedNote | Exception]:
        """Each note segmented and retrieved, or the error that stopped it."""
        out: list[RetrievedNote | Exception] = []
        segmented: dict[int, SegmentedNote] = {}
        for i, note in enumerate(notes):
            try:
                segmented[i] = self.segmenter.segment(note)
            except Exception as exc:
                out.append(exc)
            else:
                out.append(_PENDING)
        for i, retrieved in self._retrieve_many(segmented).items():
            out[i] = retrieved
        return out

    async def _judge(
        self, retrieved: Sequence[RetrievedNote | Exception]
    ) -> list[tuple[CodedNote, RetrievedNote] | Exception]:
        """Each retrieved note verified and aggregated (an error stays the note's result)."""
        out: list[tuple[CodedNote, RetrievedNote] | Exception] = []
        for note in retrieved:
            try:
                if isinstance(note, Exception):
                    raise note
                verified = await self.verifier.verify(note)
                out.append((self.aggregator.aggregate(verified), note))
            except Exception as exc:
                out.append(exc)
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


#: A note's slot in :meth:`Pipeline._retrieve_batch` until its result is known.
_PENDING = RuntimeError("not coded")


def _codes(
    results: Sequence[tuple[CodedNote, RetrievedNote] | Exception],
) -> list[CodedNote | Exception]:
    return [r if isinstance(r, Exception) else r[0] for r in results]


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
        verifier=make_verifier(
            settings.verifier,
            opened.catalogue,
            weights,
            notes,
            negated_for_review=settings.negated_for_review,
        ),
        aggregator=Aggregator(
            opened.catalogue, settings.aggregator, negated_for_review=settings.negated_for_review
        ),
        pack=opened.pack,
        catalogue=opened.catalogue,
    )
