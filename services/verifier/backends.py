"""Choose the verifier backend from the settings and the pack (the one place that knows every
backend)."""

from __future__ import annotations

from dataclasses import dataclass, field

from icdcoder.services.verifier.core import NoteVotes, Verifier
from icdcoder.services.verifier.note_model import count_coded_notes
from icdcoder.services.verifier.similarity import SimilarityVerifier
from icdcoder.services.verifier.weights import VerifierWeights
from icdcoder.shared.catalogue import Catalogue
from icdcoder.shared.memory import MemoryNote
from icdcoder.shared.settings import VerifierConfig


@dataclass(frozen=True)
class CodedNotes:
    """What the memory's coded notes tell the re-ranker: the votes of the most similar notes
    and a note classifier (each None when turned off or without coded notes), and how many
    notes carry each code."""

    similar: NoteVotes | None = None
    classifier: NoteVotes | None = None
    counts: dict[str, float] = field(default_factory=dict)


def note_votes(config: VerifierConfig, notes: tuple[MemoryNote, ...]) -> CodedNotes:
    """The memory's coded notes as the re-ranker reads them (:class:`CodedNotes`)."""
    if not notes:
        return CodedNotes()
    from icdcoder.services.verifier.note_classifier import NoteClassifier
    from icdcoder.services.verifier.similar_notes import SimilarNotes

    return CodedNotes(
        similar=SimilarNotes(notes, neighbours=config.similar_notes)
        if config.similar_notes
        else None,
        classifier=NoteClassifier(notes) if config.note_classifier else None,
        counts=count_coded_notes(note.codes for note in notes),
    )


def similarity_verifier(
    config: VerifierConfig,
    weights: VerifierWeights,
    notes: tuple[MemoryNote, ...] = (),
    *,
    negated_for_review: bool = False,
) -> SimilarityVerifier:
    """The similarity verifier of these weights, settings overriding their operating point;
    ``negated_for_review``: score negated spans' codes too (``ICDCODER_NEGATED_MENTIONS``)."""
    model = weights.note if config.note_reranker else None
    point = weights.point(reranker=model is not None)
    coded = note_votes(config, notes) if model is not None else CodedNotes()
    return SimilarityVerifier(
        accept_threshold=(
            point.accept_threshold if config.accept_threshold is None else config.accept_threshold
        ),
        review_threshold=(
            point.review_threshold if config.review_threshold is None else config.review_threshold
        ),
        max_codes_per_span=config.max_codes_per_span or point.max_codes_per_span,
        max_suggestions_per_span=config.max_suggestions_per_span,
        considered=weights.considered,
        weights=weights.span,
        note_model=model,
        similar_notes=coded.similar,
        note_classifier=coded.classifier,
        coded_notes=coded.counts,
        category_mass=config.category_mass,
        max_codes_per_note=config.max_codes_per_note or point.max_codes_per_note,
        negated_for_review=negated_for_review,
    )


def make_verifier(
    config: VerifierConfig,
    catalogue: Catalogue,
    weights: VerifierWeights,
    notes: tuple[MemoryNote, ...] = (),
    *,
    negated_for_review: bool = False,
) -> Verifier:
    """The configured backend; ``notes`` are the pack memory's coded notes,
    ``negated_for_review`` is ``ICDCODER_NEGATED_MENTIONS=review``."""
    if config.backend == "vllm":
        from icdcoder.services.verifier.vllm_backend import VllmVerifier

        return VllmVerifier(config.vllm, catalogue)
    return similarity_verifier(config, weights, notes, negated_for_review=negated_for_review)
