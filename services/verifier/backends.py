"""Choose the verifier backend from settings (the one place that knows every backend)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from icdcoder.services.verifier.core import (
    NoteModel,
    NoteVotes,
    OperatingPoint,
    SimilarityVerifier,
    SimilarityWeights,
    Verifier,
    count_coded_notes,
    note_model_from_json,
)
from icdcoder.shared.catalogue import Catalogue
from icdcoder.shared.memory import load_memory
from icdcoder.shared.settings import VerifierSettings

#: Weights fitted on CodiEsp train, shipped with the verifier: without and with the example
#: memory's features (the memory changes what the scores mean, so each has its own fit).
SHIPPED_WEIGHTS = Path(__file__).with_name("similarity_weights.json")
SHIPPED_MEMORY_WEIGHTS = Path(__file__).with_name("similarity_weights_memory.json")


def weights_file(path: Path | None, *, memory: bool = False) -> Path | None:
    """``path``, else the shipped fit for this configuration, else None (a priori weights)."""
    shipped = SHIPPED_MEMORY_WEIGHTS if memory else SHIPPED_WEIGHTS
    return path or (shipped if shipped.is_file() else None)


def similarity_weights(path: Path | None, *, memory: bool = False) -> SimilarityWeights:
    """Weights from ``path``, else the shipped fitted ones, else the a priori defaults."""
    chosen = weights_file(path, memory=memory)
    return SimilarityWeights.from_json(chosen.read_text()) if chosen else SimilarityWeights()


def operating_point(
    path: Path | None, *, memory: bool = False, note: bool = False
) -> OperatingPoint:
    """The weights file's operating point (its note re-ranker's, with ``note``), else defaults."""
    chosen = weights_file(path, memory=memory)
    return OperatingPoint.from_json(chosen.read_text(), note=note) if chosen else OperatingPoint()


def note_weights(path: Path | None, *, memory: bool = False) -> NoteModel | None:
    """The weights file's note-level re-ranker (trees or logistic), or None when it has none."""
    chosen = weights_file(path, memory=memory)
    return note_model_from_json(chosen.read_text()) if chosen else None


@dataclass(frozen=True)
class CodedNotes:
    """What the memory's coded notes tell the re-ranker: the votes of the most similar notes
    and a note classifier (each None when turned off or without coded notes), and how many
    notes carry each code."""

    similar: NoteVotes | None = None
    classifier: NoteVotes | None = None
    counts: dict[str, float] = field(default_factory=dict)


def note_votes(settings: VerifierSettings, catalogue: Catalogue) -> CodedNotes:
    """The memory's coded notes as the re-ranker reads them (:class:`CodedNotes`)."""
    if settings.memory_path is None:
        return CodedNotes()
    from icdcoder.services.verifier.note_classifier import NoteClassifier
    from icdcoder.services.verifier.similar_notes import SimilarNotes

    notes = load_memory(settings.memory_path, catalogue).notes
    if not notes:
        return CodedNotes()
    return CodedNotes(
        similar=(
            SimilarNotes(notes, neighbours=settings.similar_notes)
            if settings.similar_notes
            else None
        ),
        classifier=NoteClassifier(notes) if settings.note_classifier else None,
        counts=count_coded_notes(note.codes for note in notes),
    )


def make_verifier(settings: VerifierSettings, catalogue: Catalogue) -> Verifier:
    if settings.backend == "vllm":
        from icdcoder.services.verifier.vllm_backend import VllmVerifier

        return VllmVerifier(settings, catalogue)
    memory = settings.memory_path is not None
    reranker = None
    if settings.note_reranker:
        reranker = note_weights(settings.weights_path, memory=memory)
    point = operating_point(settings.weights_path, memory=memory, note=reranker is not None)
    coded = note_votes(settings, catalogue) if reranker else CodedNotes()
    return SimilarityVerifier(
        accept_threshold=(
            point.accept_threshold
            if settings.accept_threshold is None
            else settings.accept_threshold
        ),
        review_threshold=(
            point.review_threshold
            if settings.review_threshold is None
            else settings.review_threshold
        ),
        max_codes_per_span=settings.max_codes_per_span or point.max_codes_per_span,
        max_suggestions_per_span=settings.max_suggestions_per_span,
        weights=similarity_weights(settings.weights_path, memory=memory),
        note_weights=reranker,
        similar_notes=coded.similar,
        note_classifier=coded.classifier,
        coded_notes=coded.counts,
        max_codes_per_note=settings.max_codes_per_note or point.max_codes_per_note,
    )
