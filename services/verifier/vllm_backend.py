"""The ``vllm`` verifier backend: an LLM judges each span's candidates through a vLLM server.

One chat-completions request per span (OpenAI-compatible API, ``vllm serve MODEL``); the spans
of a note go concurrently, at most ``vllm_max_concurrency`` in flight. Each request is
constrained: ``response_format`` is a JSON schema built from a pydantic model whose ``code``
field is an enum of that span's candidate codes plus ``"NONE"``, so the model cannot name a
code that was not retrieved, or a malformed one. Every reply is validated again with the same
model anyway.

Reply -> verdicts (one verdict per span that has candidates):

- ``code`` is a candidate: a verdict for that code with the model's decision, confidence and
  justification;
- ``code`` is ``"NONE"``: a ``reject`` verdict for the span's top-ranked candidate (whatever
  decision the model wrote), so the record shows the span was judged and why nothing fits.

Spans with context flags (negated, family, ...) are judged like any other: the flags are in
the prompt, and the aggregator applies the context rules.

Failures: HTTP 429 and 5xx, timeouts, connection errors and malformed replies (not JSON, not
the schema, truncated) are retried with exponential backoff and full jitter, honouring
``Retry-After``. At temperature 0 a malformed reply is unlikely to change on retry, but it is
never turned into a verdict. After ``vllm_max_retries`` retries, or at once on another 4xx,
:class:`VerifierUnavailableError` is raised: a ``RuntimeError`` (not a ``ValueError``), so the
bus worker leaves the message pending, retries it later and dead-letters it with the reason
after its delivery limit. Nothing is lost.

Logs carry ids, counts, status codes and token usage; never note, span or reply text.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Protocol, cast

import httpx
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, create_model

from icdcoder.services.verifier.prompts import PROMPT_VERSION, PromptTemplate, load_template
from icdcoder.shared.errors import describe_validation
from icdcoder.shared.logging import get_logger
from icdcoder.shared.messages import (
    Candidate,
    Decision,
    RetrievedNote,
    SpanCandidates,
    Verdict,
    VerifiedNote,
    VerifierInfo,
)
from icdcoder.shared.settings import VllmConfig

log = get_logger(__name__)

NONE_CODE = "NONE"
BACKEND = "vllm"
#: Characters per token for budgeting. Prompts are not tokenized client-side (the server's
#: tokenizer is not known here); English clinical text runs at about 4 characters per token
#: for common BPE vocabularies, and the server's ``usage`` reports the real count.
CHARS_PER_TOKEN = 4
JUSTIFICATION_MAX_CHARS = 300
#: HTTP statuses worth retrying: rate limited, and server-side trouble.
RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})

_SPACE_RE = re.compile(r"\s+")


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


class VerifierUnavailableError(RuntimeError):
    """The vLLM server gave no usable verdict for a span after the retries (or refused it).

    The message names the span id, attempts and the last reason (status, error type or what
    failed validation), never patient text.
    """

    def __init__(self, span_id: str, attempts: int, reason: str) -> None:
        super().__init__(
            f"vllm verifier gave up on span {span_id} after {attempts} attempt(s): {reason}"
        )
        self.span_id = span_id
        self.attempts = attempts
        self.reason = reason


class _Retryable(Exception):
    """One failed attempt that may succeed if tried again."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class _Fatal(Exception):
    """A failed attempt that retrying cannot fix (e.g. HTTP 400, 401, 404)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


Justification = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=JUSTIFICATION_MAX_CHARS)
]


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


class _Envelope(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _TokenUsage(_Envelope):
    prompt_tokens: int = Field(default=0, ge=0)
    completion_tokens: int = Field(default=0, ge=0)


class _Message(_Envelope):
    content: str | None = None


class _Choice(_Envelope):
    message: _Message
    finish_reason: str | None = None


class _Completion(_Envelope):
    """The parts of a chat-completions response this backend reads."""

    choices: list[_Choice] = Field(min_length=1)
    usage: _TokenUsage | None = None


@dataclass
class UsageStats:
    """Counts for one note (logged) or since the verifier was made (:attr:`VllmVerifier.stats`).

    ``requests`` counts every attempt sent; ``malformed`` the replies rejected by validation.
    """

    spans: int = 0
    requests: int = 0
    retries: int = 0
    malformed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, other: UsageStats) -> None:
        for name, value in other.log_fields().items():
            setattr(self, name, getattr(self, name) + value)

    def log_fields(self) -> dict[str, int]:
        return {
            "spans": self.spans,
            "requests": self.requests,
            "retries": self.retries,
            "malformed": self.malformed,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
        }


class VllmVerifier:
    """Verifier backed by a vLLM (OpenAI-compatible) chat-completions server.

    ``client`` lets tests (``httpx.MockTransport``) and callers share a client; a client made
    here is closed by :meth:`aclose`. ``sleep`` and ``rng`` exist so tests need not wait.
    """

    def __init__(
        self,
        config: VllmConfig,
        catalogue: CatalogueLookup,
        *,
        client: httpx.AsyncClient | None = None,
        prompt_version: str = PROMPT_VERSION,
        prompt_token_budget: int = 1200,
        max_candidates: int = 10,
        max_tokens: int = 200,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._config = config
        self._url = config.base_url.rstrip("/") + "/chat/completions"
        self._headers = {"Authorization": f"Bearer {config.api_key.get_secret_value()}"}
        timeout = httpx.Timeout(config.timeout_s, connect=min(10.0, config.timeout_s))
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(
            timeout=timeout,
            limits=httpx.Limits(max_connections=config.max_concurrency),
        )
        self._timeout = timeout
        self._semaphore = asyncio.Semaphore(config.max_concurrency)
        self._prompts = PromptBuilder(
            template=load_template(prompt_version),
            catalogue=catalogue,
            token_budget=prompt_token_budget,
            max_candidates=max_candidates,
        )
        self._max_tokens = max_tokens
        self._max_retries = config.max_retries
        self._backoff_base_s = backoff_base_s
        self._backoff_max_s = backoff_max_s
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._totals = UsageStats()

    @property
    def info(self) -> VerifierInfo:
        """Which backend, model and prompt; token counts are per note, on each result."""
        return VerifierInfo(
            backend=BACKEND,
            model=self._config.model,
            prompt_version=self._prompts.template.version,
        )

    @property
    def stats(self) -> UsageStats:
        """Totals since this verifier was made (a copy), failed notes included."""
        return UsageStats(**self._totals.log_fields())

    @property
    def prompts(self) -> PromptBuilder:
        return self._prompts

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> VllmVerifier:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def verify(self, note: RetrievedNote) -> VerifiedNote:
        started = time.perf_counter()
        usage = UsageStats()
        items = [item for item in note.items if item.candidates]
        usage.spans = len(items)
        tasks = [asyncio.ensure_future(self._verify_span(item, note.text, usage)) for item in items]
        try:
            per_span = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._totals.add(usage)
            log.warning("vllm_verify", outcome="failed", **usage.log_fields())
            raise
        self._totals.add(usage)
        verdicts = list(per_span)
        elapsed = time.perf_counter() - started
        log.info("vllm_verify", outcome="ok", ms=round(elapsed * 1000, 1), **usage.log_fields())
        info = self.info.model_copy(
            update={
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
            }
        )
        return VerifiedNote(
            note_id=note.note_id,
            text=note.text,
            catalogue_version=note.catalogue_version,
            items=note.items,
            verdicts=verdicts,
            verifier=info,
            timings={**note.timings, "verifier": elapsed},
        )

    def request_body(
        self, prompt: SpanPrompt, model: type[BaseModel] | None = None
    ) -> dict[str, Any]:
        """The chat-completions request for one span (``model``: its reply model, if built)."""
        model = model or reply_model(prompt.codes)
        return {
            "model": self._config.model,
            "messages": [
                {"role": "system", "content": prompt.system},
                {"role": "user", "content": prompt.user},
            ],
            "temperature": 0.0,
            "max_tokens": self._max_tokens,
            "n": 1,
            "response_format": response_format(model),
        }

    async def _verify_span(
        self, item: SpanCandidates, note_text: str, usage: UsageStats
    ) -> Verdict:
        prompt = self._prompts.build(item, note_text)
        model = reply_model(prompt.codes)
        body = self.request_body(prompt, model)
        attempts = self._max_retries + 1
        reason = "no attempt"
        for attempt in range(1, attempts + 1):
            try:
                async with self._semaphore:
                    reply = await self._attempt(body, model, usage)
            except _Fatal as fatal:
                raise VerifierUnavailableError(item.span.span_id, attempt, fatal.reason) from None
            except _Retryable as failed:
                reason = failed.reason
                if attempt == attempts:
                    break
                usage.retries += 1
                delay = self._backoff(attempt, failed.retry_after)
                log.warning(
                    "vllm_retry",
                    span_id=item.span.span_id,
                    attempt=attempt,
                    reason=reason,
                    delay_s=round(delay, 3),
                )
                await self._sleep(delay)
                continue
            return self._verdict(item, reply)
        raise VerifierUnavailableError(item.span.span_id, attempts, reason)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Full jitter on an exponential cap; never sooner than the server's Retry-After."""
        cap = min(self._backoff_max_s, self._backoff_base_s * 2 ** (attempt - 1))
        delay = self._rng.uniform(0.0, cap)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self._backoff_max_s))
        return delay

    async def _attempt(
        self, body: dict[str, Any], model: type[BaseModel], usage: UsageStats
    ) -> SpanReply:
        usage.requests += 1
        try:
            response = await self._client.post(
                self._url, json=body, headers=self._headers, timeout=self._timeout
            )
        except httpx.TimeoutException as exc:
            raise _Retryable(f"timeout ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            raise _Retryable(f"connection error ({type(exc).__name__})") from None
        status = response.status_code
        if status in RETRY_STATUSES:
            raise _Retryable(f"HTTP {status}", _retry_after(response))
        if status >= 400:
            raise _Fatal(f"HTTP {status}")
        try:
            completion = _Completion.model_validate_json(response.content)
        except ValidationError as exc:
            usage.malformed += 1
            raise _Retryable(f"malformed response: {_describe(exc)}") from None
        if completion.usage is not None:
            usage.prompt_tokens += completion.usage.prompt_tokens
            usage.completion_tokens += completion.usage.completion_tokens
        choice = completion.choices[0]
        try:
            if choice.finish_reason == "length":
                raise ValueError("reply truncated at max_tokens")
            if choice.message.content is None:
                raise ValueError("reply has no content")
            parsed = model.model_validate_json(choice.message.content)
        except ValueError as exc:
            usage.malformed += 1
            raise _Retryable(f"malformed reply: {_describe(exc)}") from None
        return SpanReply.model_validate(parsed.model_dump())

    def _verdict(self, item: SpanCandidates, reply: SpanReply) -> Verdict:
        if reply.code == NONE_CODE:
            return Verdict(
                span_id=item.span.span_id,
                code=item.candidates[0].code,
                decision="reject",
                confidence=reply.confidence,
                justification=reply.justification,
            )
        return Verdict(
            span_id=item.span.span_id,
            code=reply.code,
            decision=reply.decision,
            confidence=reply.confidence,
            justification=reply.justification,
        )


def _describe(exc: BaseException) -> str:
    """What failed, without the reply text (it may echo patient text)."""
    if isinstance(exc, ValidationError):
        return describe_validation(exc, messages=False)
    return str(exc)


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP-date), if any."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
