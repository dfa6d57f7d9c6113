"""How a span's context changes what it is searched and judged as.

A family span ("mother had breast cancer") is read as "family history of ...", a historical
span as "personal history of ...", so the Z80-Z87 codes describing that context can be found
and verified; both retriever and verifier use these texts. :func:`context_reason` says which
codes a span may produce at all: the verifier scores only those, the aggregator enforces it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from icdcoder.shared.messages import Span
from icdcoder.shared.text import content_words, in_title_words


def contextual_text(span: Span) -> str | None:
    """The span read in its family/historical context, or None when it has no such context."""
    lowered = span.text.lower()
    if span.context.family and "family" not in lowered:
        return f"family history of {span.text}"
    if span.context.historical and not span.context.family and "history" not in lowered:
        return f"personal history of {span.text}"
    return None


def query_texts(span: Span, *, by_phrase: bool = True) -> list[str]:
    """The texts searched for a span: the span itself, its context reading if any, the
    phrases of a long span when ``by_phrase`` (:func:`phrases`) and the span in the titles'
    words ("renal lithiasis" is also searched as "kidney calculus":
    ``shared/text.in_title_words``)."""
    context, titled = contextual_text(span), in_title_words(span.text)
    return [
        span.text,
        *([] if context is None else [context]),
        *(phrases(span.text) if by_phrase else []),
        *([] if titled is None else [titled]),
    ]


#: A span of more words than this is also searched phrase by phrase.
LONG_SPAN_WORDS = 5
#: Where a long span's phrases part: brackets, commas, linking verbs, the words that join two
#: conditions ("fever with chills", "a mass that was compatible with a lipoma") and those of
#: its treatment ("type 2 diabetes controlled by diet").
_PHRASE_BREAK = re.compile(
    r"\s*(?:[(),]|\b(?:due to|secondary to|caused by|associated with|following|after|with"
    r"|without|appears?|appeared|was|were|is|are|had|has|have|showed|shows|revealed|presented"
    r"|presenting|persistence of|presence of|compatible with|suggestive of|consistent with"
    r"|treated|controlled|managed|requiring|required)\b)"
    r"\s*",
    re.IGNORECASE,
)
_EDGE = " \t\n.;:-'\""


def phrases(text: str) -> list[str]:
    """The phrases of a long span, each searched besides the whole: "Vomiting and several
    diarrheal stools appear, with persistence of the febrile syndrome" -> "Vomiting and
    several diarrheal stools", "the febrile syndrome". The whole span names what a
    combination code needs ("diabetes with nephropathy"); a phrase finds what the whole span's
    vector blurs. A phrase with no content word (``shared/text.py``) is left out."""
    if len(text.split()) <= LONG_SPAN_WORDS:
        return []
    found = []
    for piece in _PHRASE_BREAK.split(text):
        piece = piece.strip(_EDGE)
        if piece and piece != text and content_words(piece) and piece not in found:
            found.append(piece)
    return found


FAMILY_HISTORY = ("Z80", "Z81", "Z82", "Z83", "Z84")
PERSONAL_HISTORY = ("Z85", "Z86", "Z87", "Z92")
#: Status codes: what a past condition or procedure left ("status post nephrectomy" is Z90.5,
#: "on dialysis" Z99.2): allergy status, acquired absence, transplants, implants, ostomies and
#: postprocedural states, dependence on machines (Z88-Z99 less the history codes above).
STATUS = ("Z88", "Z89", "Z90", "Z91", "Z93", "Z94", "Z95", "Z96", "Z97", "Z98", "Z99")
#: Lifelong conditions: "a history of hypertension" says the patient has it (it does not
#: resolve), so a historical span may produce the condition's own code, not only a personal
#: history code (the Official Guidelines keep Z85-Z87 for conditions that no longer exist).
CHRONIC = (
    *("I10", "I11", "I12", "I13", "I15", "I25", "I48", "I50"),  # hypertensive, ischaemic, AF, HF
    *("E03", "E10", "E11", "E13", "E66", "E78"),  # hypothyroidism, diabetes, obesity, lipids
    *("J44", "J45", "N18", "N40", "K50", "K51", "K74", "B18", "B20"),
    *("G20", "G30", "G35", "G40", "F20", "F31", "M05", "M06", "M15", "M16", "M17", "M81"),
)


#: What a historical span may produce.
PAST = PERSONAL_HISTORY + STATUS + CHRONIC


def rules_out_every_code(span: Span) -> bool:
    """True when :func:`context_reason` refuses the span every code (negated): the retriever
    need not search it (with ``ICDCODER_NEGATED_MENTIONS=review`` it searches it anyway)."""
    return span.context.negated


def context_reason(span: Span, code: str, *, negated_for_review: bool = False) -> str | None:
    """Why this span may not produce this code, or None when it may.

    A negated span ("no fever") produces nothing, as the Official Guidelines say, unless
    ``negated_for_review`` (``ICDCODER_NEGATED_MENTIONS=review``): then its codes are listed
    for review (:func:`review_reason`), never accepted."""
    ctx = span.context
    if ctx.negated and not negated_for_review:
        return "negated"
    if ctx.family and not code.startswith(FAMILY_HISTORY):
        return "family history: the condition is a relative's"
    return None


def review_reason(span: Span, code: str) -> str | None:
    """Why this span's code is for a coder to review, not to accept (None: it may be accepted).

    - A negated span ("no fever"), when negated mentions are listed at all
      (:func:`context_reason`): the note rules the condition out.
    - A hypothetical or uncertain span ("possible pneumonia", "rule out sepsis"): an uncertain
      diagnosis at an inpatient discharge is coded as if established, an outpatient's is not
      (Official Guidelines II.H, IV.H); the note does not say which.
    - A historical span ("a history of nephrolithiasis") tells of a condition the patient may
      no longer have: only its personal-history, status or lifelong-condition codes
      (:data:`PAST`) stand on it. If the condition is not current, its history code applies
      (I.C.21.c.4)."""
    ctx = span.context
    if ctx.negated:
        return "negated: the note rules it out"
    if ctx.hypothetical:
        return "hypothetical or uncertain"
    if ctx.historical and not ctx.family and not code.startswith(PAST):
        return "historical: the note tells of it in the past; code it only if it is current"
    return None


def stated_text(text: str, spans: Iterable[Span]) -> str:
    """The note's ``text`` without its negated or hypothetical spans: what the note states of
    the patient. "No fever or cough" states neither, "possible pneumonia" no pneumonia."""
    parts: list[str] = []
    at = 0
    unstated = (s for s in spans if s.context.negated or s.context.hypothetical)
    for span in sorted(unstated, key=lambda s: s.start):
        if span.start >= at:
            parts.append(text[at : span.start])
        at = max(at, span.end)
    parts.append(text[at:])
    return " ".join(parts)
