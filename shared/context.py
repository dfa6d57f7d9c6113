"""How a span's context changes what it is searched and judged as.

A family span ("mother had breast cancer") is read as "family history of ...", a historical
span as "personal history of ...", so the Z80-Z87 codes describing that context can be found
and verified; both retriever and verifier use these texts. :func:`context_reason` says which
codes a span may produce at all: the verifier scores only those, the aggregator enforces it.
"""

from __future__ import annotations

from icdcoder.shared.messages import Span


def contextual_text(span: Span) -> str | None:
    """The span read in its family/historical context, or None when it has no such context."""
    lowered = span.text.lower()
    if span.context.family and "family" not in lowered:
        return f"family history of {span.text}"
    if span.context.historical and not span.context.family and "history" not in lowered:
        return f"personal history of {span.text}"
    return None


def query_texts(span: Span) -> list[str]:
    """The texts searched for a span: the span itself, plus its context reading if any."""
    extra = contextual_text(span)
    return [span.text] if extra is None else [span.text, extra]


FAMILY_HISTORY = ("Z80", "Z81", "Z82", "Z83", "Z84")
PERSONAL_HISTORY = ("Z85", "Z86", "Z87", "Z92")


def context_reason(span: Span, code: str) -> str | None:
    """Why this span may not produce this code, or None when it may."""
    ctx = span.context
    if ctx.negated:
        return "negated"
    if ctx.hypothetical:
        return "hypothetical or uncertain"
    if ctx.family and not code.startswith(FAMILY_HISTORY):
        return "family history: the condition is a relative's"
    if ctx.historical and not ctx.family and not code.startswith(PERSONAL_HISTORY):
        return "historical: a past condition, not a current one"
    return None
