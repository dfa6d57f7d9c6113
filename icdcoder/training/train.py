"""A fit from end to end: a base pack and a coded corpus in, new verifier weights out.

:func:`retrieve_corpus` retrieves the corpus with the base pack (cached) and searches its memory
with each case's own examples left out; :func:`fit_weights` fits the span model on the first
``span_cases`` cases and the note model on all of them over the new span confidences, and returns
the weights file's content, the base's operating points kept. ``icdcoder train`` writes that into
a new pack.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from icdcoder.services.retriever.rerank import Reranker
from icdcoder.services.verifier.span_model import FEATURES, SpanWeights
from icdcoder.shared.memory import MemoryNote
from icdcoder.shared.messages import RetrievedNote
from icdcoder.shared.pack import OpenPack
from icdcoder.shared.settings import Settings
from icdcoder.training.corpus import CodedCase
from icdcoder.training.note_fit import (
    TREE_PARAMS,
    fit_note_logistic,
    fit_trees,
    note_rows,
)
from icdcoder.training.rerank_fit import fit_reranker, rerank_rows, reranked
from icdcoder.training.retrieval import (
    ExampleVectors,
    Retrieved,
    as_searched,
    cache_stem,
    cached,
    retrieval_key,
    retrieve_cases,
    with_memory,
)
from icdcoder.training.span_fit import fit_span, span_rows
from icdcoder.training.weights_file import provenance, with_note, with_span

NoteModelKind = Literal["trees", "logistic"]


@dataclass(frozen=True)
class TrainingData:
    """The corpus as the verifier sees it with the base pack."""

    cases: tuple[CodedCase, ...]
    notes: tuple[RetrievedNote, ...]
    #: Whether the pack has an example memory (its examples searched leave-one-case-out).
    memory: bool = False
    #: The memory's coded notes (empty without a memory).
    memory_notes: tuple[MemoryNote, ...] = ()
    #: The retrieval cache's name (provenance).
    retrieval: str = ""
    from_cache: bool = False
    seconds: float = 0.0


def _progress(desc: str) -> Any:
    from tqdm import tqdm

    return lambda cases: tqdm(cases, desc=desc, unit="note", file=sys.stderr)


def retrieve_catalogue(
    corpus_name: str,
    cases: Sequence[CodedCase],
    opened: OpenPack,
    settings: Settings,
    *,
    progress: bool = True,
) -> tuple[Retrieved, bool]:
    """Every case segmented and retrieved against the pack's catalogue texts only (cached: the
    memory and weights are not in the key), with one vector per span; True when cached."""
    from icdcoder.services.retriever.adapters import (
        catalogue_index,
        lexical_side,
        load_encoder,
        runtime,
    )

    pack, config = opened.pack, settings.retriever
    descriptions = {code: info.description for code, info in opened.catalogue.codes.items()}
    key = retrieval_key(pack, config.top_k, runtime(config))

    def compute() -> Retrieved:
        from icdcoder.services.retriever.core import Encoder, Retriever
        from icdcoder.services.retriever.vector_cache import stderr_progress
        from icdcoder.services.segmenter.core import Segmenter

        encoder = load_encoder(pack, config, settings.cache_dir)
        bundle = catalogue_index(
            pack,
            config,
            opened.catalogue,
            encoder,
            settings.cache_dir,
            progress=stderr_progress if progress else None,
        )
        bundle.index.to_gpu_if_available()

        lexical = lexical_side(bundle, config, settings.cache_dir)

        def make_retriever(recorder: Encoder) -> Retriever:
            # Every span is searched, so every span has its vector (the memory's leave-one-out
            # search, `learn`'s alignment); retrieve_corpus blanks what inference skips.
            return Retriever(
                recorder,
                bundle.index,
                bundle.rows,
                descriptions,
                catalogue_version=opened.catalogue.version,
                pack=pack.id,
                top_k=config.top_k,
                lexical=lexical,
                search_ruled_out=True,
                phrases=config.phrases,
            )

        segmenter = Segmenter(settings.segmenter)
        return retrieve_cases(
            cases,
            segmenter.segment,
            make_retriever,
            encoder,
            _progress(f"retrieve {corpus_name}") if progress else None,
        )

    stem = cache_stem(settings.cache_dir, corpus_name, cases, key)
    return cached(stem, cases, compute)


def retrieve_corpus(
    corpus_name: str,
    cases: Sequence[CodedCase],
    opened: OpenPack,
    settings: Settings,
    *,
    progress: bool = True,
    leave_case_out: bool = True,
    reranker: Reranker | None = None,
) -> TrainingData:
    """Every case retrieved with the pack (cached), each span's candidates chosen by
    ``reranker`` when given (:func:`base_reranker`), its memory searched leave-one-case-out
    (``leave_case_out=False``: as the retriever searches it, for held-out cases)."""
    from icdcoder.services.retriever.adapters import load_encoder, runtime
    from icdcoder.services.retriever.rerank import code_traits

    started = time.perf_counter()
    pack, config = opened.pack, settings.retriever
    descriptions = {code: info.description for code, info in opened.catalogue.codes.items()}
    pooled = pooled_settings(settings, reranker.pool) if reranker else settings
    key = retrieval_key(pack, pooled.retriever.top_k, runtime(config))
    stem = cache_stem(settings.cache_dir, corpus_name, cases, key)
    retrieved, hit = retrieve_catalogue(corpus_name, cases, opened, pooled, progress=progress)
    notes = retrieved.notes
    if reranker is not None:
        if not config.search_ruled_out:
            notes = tuple(as_searched(notes))
        notes = tuple(reranked(notes, reranker, code_traits(opened.catalogue), config.top_k))
    memory = opened.memory
    memory_notes: tuple[MemoryNote, ...] = ()
    if memory is not None:
        memory_notes = memory.notes
        if memory.examples:
            encoder = load_encoder(pack, config, settings.cache_dir)
            examples = ExampleVectors.encode(memory.examples, encoder)
            notes = tuple(
                with_memory(
                    notes,
                    retrieved.span_vectors,
                    examples,
                    descriptions,
                    leave_case_out=leave_case_out,
                    neighbours=config.memory_neighbours,
                )
            )
    if not config.search_ruled_out:
        notes = tuple(as_searched(notes))
    return TrainingData(
        cases=tuple(cases),
        notes=notes,
        memory=memory is not None,
        memory_notes=memory_notes,
        retrieval=stem.name,
        from_cache=hit,
        seconds=time.perf_counter() - started,
    )


def pooled_settings(settings: Settings, pool: int) -> Settings:
    """The settings with each span's first ``pool`` codes retrieved (at least ``top_k``)."""
    config = settings.retriever
    return settings.with_section(
        retriever=config.model_copy(update={"top_k": max(pool, config.top_k)})
    )


def base_reranker(opened: OpenPack, settings: Settings) -> Reranker | None:
    """The retrieval re-ranker inference uses with this pack and these settings, if any."""
    from icdcoder.services.retriever.adapters import pack_reranker

    return pack_reranker(opened.pack) if settings.retriever.rerank else None


def fit_retrieval(
    corpus_name: str,
    corpus: str,
    cases: Sequence[CodedCase],
    opened: OpenPack,
    settings: Settings,
    pool: int,
    *,
    progress: bool = True,
) -> dict[str, Any]:
    """The weights file's ``retrieval`` section, fitted on the cases' pools of ``pool`` codes
    (retrieved as inference searches them; cached); ``corpus`` describes them."""
    from icdcoder.services.retriever.rerank import code_traits

    retrieved, _ = retrieve_catalogue(
        corpus_name, cases, opened, pooled_settings(settings, pool), progress=progress
    )
    notes = retrieved.notes
    if not settings.retriever.search_ruled_out:
        notes = tuple(as_searched(notes))
    x, y = rerank_rows(cases, notes, code_traits(opened.catalogue), pool)
    return fit_reranker(x, y, pool, fitted_on=f"{corpus}, {len(cases)} cases")


@dataclass(frozen=True)
class FitOptions:
    """What to fit; None and empty values take the base's choices."""

    #: The span model is fitted on the first N cases (None: all).
    span_cases: int | None = None
    #: Keep the base's span weights; fit only the note model over them.
    fit_span: bool = True
    #: The span features (None: those the base's span weights have).
    span_features: tuple[str, ...] | None = None
    note_model: NoteModelKind = "trees"
    #: Boosting settings (None: the base's trees' settings, else :data:`TREE_PARAMS`).
    tree_params: Mapping[str, float | int] | None = None
    #: How many of a span's candidates to fit on and score (None: the base's).
    considered: int | None = None


@dataclass
class FitReport:
    """What a fit saw, for the summary line."""

    span_cases: int = 0
    candidates: int = 0
    span_positives: int = 0
    note_cases: int = 0
    codes: int = 0
    note_positives: int = 0
    span_features: tuple[str, ...] = ()
    tree_params: dict[str, float | int] = field(default_factory=dict)


def base_span_features(base: Mapping[str, Any], memory: bool) -> tuple[str, ...]:
    """The span features a base weights file uses, in :data:`FEATURES` order."""
    present = tuple(name for name in FEATURES if name in base)
    if present:
        return present
    return FEATURES if memory else tuple(f for f in FEATURES if not f.startswith("memory"))


def fit_weights(
    data: TrainingData,
    base: Mapping[str, Any],
    options: FitOptions,
    *,
    corpus: str,
    settings: Settings,
    progress: bool = True,
) -> tuple[dict[str, Any], FitReport]:
    """The new weights file's content (span and note sections) and what the fit saw."""
    from icdcoder.services.verifier.similarity import SimilarityVerifier
    from icdcoder.services.verifier.weights import CONSIDERED_BEFORE

    report = FitReport()
    considered = options.considered or int(base.get("considered", CONSIDERED_BEFORE))
    memory = data.memory
    weights = dict(base) | {"considered": considered}
    if options.fit_span:
        count = min(options.span_cases or len(data.cases), len(data.cases))
        features = options.span_features or base_span_features(base, memory)
        x, y = span_rows(data.cases[:count], data.notes[:count], considered)
        fitted = fit_span(x, y, features)
        origin = provenance(corpus, count, data.retrieval, memory, "candidates", y, "span")
        weights = with_span(weights, fitted, origin)
        report.span_cases, report.candidates = count, len(y)
        report.span_positives, report.span_features = int(y.sum()), tuple(features)
    verifier = SimilarityVerifier(weights=SpanWeights.from_dict(weights), considered=considered)
    x, y = note_rows(
        data.cases, data.notes, verifier, data.memory_notes, settings.verifier, progress=progress
    )
    origin = provenance(corpus, len(data.cases), data.retrieval, memory, "codes", y, "note")
    if options.note_model == "trees":
        params = dict(options.tree_params or base_tree_params(base))
        note = fit_trees(x, y, params)
        report.tree_params = params
    else:
        note = fit_note_logistic(x, y)
    weights = with_note(weights, note | {"provenance": origin})
    report.note_cases, report.codes, report.note_positives = len(data.cases), len(y), int(y.sum())
    return weights, report


def base_tree_params(base: Mapping[str, Any]) -> dict[str, float | int]:
    """The boosting settings of the base's note trees, else :data:`TREE_PARAMS`."""
    note = base.get("note") or {}
    params = note.get("params") if "trees" in note else None
    return dict(params) if params else dict(TREE_PARAMS)
