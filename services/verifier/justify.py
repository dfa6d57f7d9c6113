"""Justifications: one sentence per verdict saying what in the span matched which code text.

They name the code, the span's words it shares with the matched catalogue text, the similarity,
and how the example memory and the coded notes voted. They never quote another note: an
example's or a similar note's text is patient data of another patient.
"""

from __future__ import annotations

from icdcoder.services.verifier.note_model import CodeInNote
from icdcoder.shared.messages import Candidate, Decision
from icdcoder.shared.text import shared_words

VERBS: dict[Decision, str] = {
    "accept": "supports",
    "review": "may support",
    "reject": "does not support",
}


def justify(span_text: str, cand: Candidate, decision: Decision) -> str:
    """Why the span does or may support ``cand``'s code."""
    parts: list[str] = []
    if cand.matched:
        words = shared_words(span_text, f"{cand.matched} {cand.description}")
        said = ", ".join(f"'{w}'" for w in words[:6]) if words else "no shared words"
        parts.append(f"{said} match '{cand.matched}' (similarity {cand.score:.2f})")
    if cand.memory_votes:
        plural = "s" if cand.memory_votes > 1 else ""
        parts.append(
            f"{cand.memory_votes} confirmed example{plural} among the nearest "
            f"(similarity {cand.memory_score:.2f})"
        )
    return f"Span {VERBS[decision]} {cand.code} ({cand.description}): {'; '.join(parts)}."


def note_context(row: CodeInNote) -> str:
    """What the rest of the note and the coded notes add (empty when nothing)."""
    extra = ""
    if len(row.spans) > 1:
        extra += f" {len(row.spans)} spans of the note retrieved it."
    if row.similar_notes > 0:
        # how much, never which: the other notes' text stays out of the output
        extra += f" The most similar coded notes vote {row.similar_notes:.2f} for it."
    if row.classifier is not None:
        extra += f" The classifier of coded notes gives it log-odds {row.classifier:+.1f}."
    return extra
