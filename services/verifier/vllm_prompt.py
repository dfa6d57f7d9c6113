"""Prompts for the vLLM verifier: what the model sees of a span, and the reply it must give.

A prompt holds the span, its sentence (clipped around the span), its context flags, its section
and the candidates with their catalogue notes, within a token budget. The reply is constrained
by a JSON schema built from :func:`reply_model`: ``code`` is an enum of the span's candidate
codes plus ``"NONE"``, so the model cannot name a code that was not retrieved.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Protocol, cast

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, create_model

from icdcoder.services.verifier.prompts import PromptTemplate
from icdcoder.shared.messages import Candidate, Decision, SpanCandidates

NONE_CODE = "NONE"
#: Characters per token for budgeting. Prompts are not tokenized client-side (the server's
#: tokenizer is not known here); English clinical text runs at about 4 characters per token
#: for common BPE vocabularies, and the server's ``usage`` reports the real count.
CHARS_PER_TOKEN = 4
JUSTIFICATION_MAX_CHARS = 300

_SPACE_RE = re.compile(r"\s+")

Justification = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=JUSTIFICATION_MAX_CHARS)
]


class CodeInfoLike(Protocol):
    """What the prompt uses from a catalogue entry (``icdcoder.shared.catalogue.CodeInfo`` fits)."""

    @property
    def description(self) -> str: ...
    @property
    def inclusion_terms(self) -> tuple[str, ...]: ...
    @property
    def excludes1(self) -> tuple[str, ...]: ...
    @property
    def code_first(self) -> tuple[str, ...]: ...


class CatalogueLookup(Protocol):
    """The catalogue as this backend needs it (``icdcoder.shared.catalogue.Catalogue`` fits)."""

    def get(self, code: str) -> CodeInfoLike | None: ...


class SpanReply(BaseModel):
    """A validated reply (``code`` is one of the enum the reply model was built with)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str
    decision: Decision
    confidence: float = Field(ge=0.0, le=1.0)
    justification: Justification


def reply_model(codes: Sequence[str]) -> type[BaseModel]:
    """The pydantic model of a reply for a span whose candidates are ``codes``.

    ``code`` is a ``Literal`` of the candidate codes plus ``"NONE"``; its JSON schema is what
    the server constrains decoding to.
    """
    choices = tuple(dict.fromkeys([*codes, NONE_CODE]))
    code_type = cast(Any, Literal).__getitem__(choices)
    model: type[BaseModel] = create_model(
        "SpanVerdict",
        __config__=ConfigDict(extra="forbid"),
        code=(code_type, ...),
        decision=(cast(Any, Decision), ...),
        confidence=(float, Field(ge=0.0, le=1.0)),
        justification=(Justification, ...),
    )
    return model


def response_format(model: type[BaseModel]) -> dict[str, Any]:
    """The ``response_format`` for a chat-completions request constrained to ``model``."""
    return {
        "type": "json_schema",
        "json_schema": {
            "name": "span_verdict",
            "schema": model.model_json_schema(),
            "strict": True,
        },
    }


def approx_tokens(text: str) -> int:
    """Approximate token count (see :data:`CHARS_PER_TOKEN`)."""
    return -(-len(text) // CHARS_PER_TOKEN)


def _clean(text: str) -> str:
    return _SPACE_RE.sub(" ", text).strip()


def _clip(text: str, limit: int) -> str:
    text = _clean(text)
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


@dataclass(frozen=True)
class SpanPrompt:
    """A rendered request for one span: the messages and the codes its enum allows."""

    span_id: str
    system: str
    user: str
    codes: tuple[str, ...]


@dataclass(frozen=True)
class PromptBuilder:
    """Renders the template for one span, trimmed to an approximate token budget.

    Budget rule (tokens ~ chars/4): the fixed text (instructions, sentence, span, flags) is
    always kept (the sentence is clipped to ``sentence_chars`` around the span). Then every
    shown candidate gets its code and description line, in retrieval order; candidates beyond
    ``max_candidates``, or whose line no longer fits, are dropped (and are not in the enum).
    What budget is left goes to catalogue notes in retrieval order: for each candidate its
    inclusion terms, Excludes1 and code-first notes, at most ``notes_per_kind`` of each kind,
    each clipped to ``note_chars``; a note that does not fit is skipped. So the top candidates
    keep their notes and the tail loses them first.
    """

    template: PromptTemplate
    catalogue: CatalogueLookup
    token_budget: int = 1200
    max_candidates: int = 10
    notes_per_kind: int = 3
    note_chars: int = 160
    sentence_chars: int = 600

    def build(self, item: SpanCandidates, note_text: str) -> SpanPrompt:
        span = item.span
        fields = {
            "prompt_version": self.template.version,
            "section": _clip(span.section, 80) or "(none)",
            "sentence": self._sentence(
                note_text, span.start, span.end, span.sentence_start, span.sentence_end
            ),
            "span": _clip(span.text, 300),
            "flags": ", ".join(span.context.active()) or "none",
        }
        system = self.template.system.format(**fields)
        fixed = approx_tokens(system) + approx_tokens(
            self.template.user.format(candidates="", **fields)
        )
        left = self.token_budget - fixed

        shown: list[tuple[Candidate, str]] = []
        seen: set[str] = set()
        for cand in item.candidates:
            if len(shown) >= self.max_candidates:
                break
            if cand.code in seen or cand.code == NONE_CODE:
                continue
            info = self.catalogue.get(cand.code)
            description = info.description if info is not None else cand.description
            line = f"{len(shown) + 1}. {cand.code}: {_clip(description, 200)}"
            matched = _clean(cand.matched)
            if matched and matched.lower() != _clean(description).lower():
                line += f" (matched: {_clip(matched, 120)})"
            cost = approx_tokens(line) + 1
            if shown and cost > left:  # the first candidate is always shown
                break
            shown.append((cand, line))
            seen.add(cand.code)
            left -= cost

        blocks: list[list[str]] = [[line] for _, line in shown]
        for block, (cand, _) in zip(blocks, shown, strict=True):
            info = self.catalogue.get(cand.code)
            if info is None:
                continue
            for label, notes in (
                ("includes", info.inclusion_terms),
                ("Excludes1", info.excludes1),
                ("code first", info.code_first),
            ):
                for note in notes[: self.notes_per_kind]:
                    text = f"   {label}: {_clip(note, self.note_chars)}"
                    cost = approx_tokens(text) + 1
                    if cost <= left:
                        block.append(text)
                        left -= cost
        candidates = "\n".join(line for block in blocks for line in block)
        user = self.template.user.format(candidates=candidates, **fields)
        return SpanPrompt(
            span_id=span.span_id,
            system=system,
            user=user,
            codes=tuple(cand.code for cand, _ in shown),
        )

    def _sentence(self, text: str, start: int, end: int, s_start: int, s_end: int) -> str:
        """The span's sentence, clipped around the span to ``sentence_chars``."""
        lo, hi = s_start, s_end
        if hi - lo > self.sentence_chars:
            room = max(0, self.sentence_chars - (end - start)) // 2
            lo = max(s_start, start - room)
            hi = min(s_end, end + room)
        sentence = _clean(text[lo:hi])
        return ("…" if lo > s_start else "") + sentence + ("…" if hi < s_end else "")
