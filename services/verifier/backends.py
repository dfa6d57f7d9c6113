"""Choose the verifier backend from settings (the one place that knows every backend)."""

from __future__ import annotations

from services.verifier.core import SimilarityVerifier, Verifier
from shared.catalogue import Catalogue
from shared.settings import VerifierSettings


def make_verifier(settings: VerifierSettings, catalogue: Catalogue) -> Verifier:
    if settings.backend == "vllm":
        from services.verifier.vllm_backend import VllmVerifier

        return VllmVerifier(settings, catalogue)
    return SimilarityVerifier(
        accept_threshold=settings.accept_threshold,
        review_threshold=settings.review_threshold,
        max_codes_per_span=settings.max_codes_per_span,
    )
