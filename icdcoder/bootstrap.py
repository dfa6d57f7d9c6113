"""The composition root: wires the four stage cores into one in-process pipeline.

Every dependency has a default read from settings and can be overridden (tests pass fakes or
smaller settings). The bus workers wire the same cores, one stage per process.
"""

from __future__ import annotations

from dataclasses import dataclass

from icdcoder.services.aggregator.core import Aggregator
from icdcoder.services.retriever.adapters import ProgressFactory, load_retriever, stderr_progress
from icdcoder.services.retriever.core import Retriever
from icdcoder.services.segmenter.core import Segmenter
from icdcoder.services.verifier.backends import make_verifier
from icdcoder.services.verifier.core import Verifier
from icdcoder.shared.catalogue import Catalogue, load_catalogue
from icdcoder.shared.messages import CodedNote, NoteIn, RetrievedNote
from icdcoder.shared.settings import (
    AggregatorSettings,
    RetrieverSettings,
    SegmenterSettings,
    VerifierSettings,
)


@dataclass
class Pipeline:
    segmenter: Segmenter
    retriever: Retriever
    verifier: Verifier
    aggregator: Aggregator

    @property
    def catalogue_version(self) -> str:
        return self.retriever.catalogue_version

    async def code_note(self, note: NoteIn) -> tuple[CodedNote, RetrievedNote]:
        """Code one note; also returns the retrieval layer (candidates) for evaluation."""
        segmented = self.segmenter.segment(note)
        retrieved = self.retriever.retrieve(segmented)
        verified = await self.verifier.verify(retrieved)
        return self.aggregator.aggregate(verified), retrieved

    async def code(self, note: NoteIn) -> CodedNote:
        coded, _ = await self.code_note(note)
        return coded


def build_pipeline(
    *,
    segmenter: SegmenterSettings | None = None,
    retriever: RetrieverSettings | None = None,
    verifier: VerifierSettings | None = None,
    aggregator: AggregatorSettings | None = None,
    catalogue: Catalogue | None = None,
    progress: ProgressFactory | None = stderr_progress,
) -> Pipeline:
    retriever_settings = retriever or RetrieverSettings()
    catalogue = catalogue or load_catalogue(retriever_settings.index_csv)
    return Pipeline(
        segmenter=Segmenter(segmenter or SegmenterSettings()),
        retriever=load_retriever(retriever_settings, catalogue, progress=progress),
        # the verifier's weights follow the retriever's memory unless told otherwise
        verifier=make_verifier(
            verifier or VerifierSettings(memory_path=retriever_settings.memory_path), catalogue
        ),
        aggregator=Aggregator(catalogue, aggregator or AggregatorSettings()),
    )
