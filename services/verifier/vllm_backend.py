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
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from pydantic import BaseModel, ValidationError

from icdcoder.services.verifier.prompts import PROMPT_VERSION, load_template
from icdcoder.services.verifier.vllm_prompt import (
    NONE_CODE,
    CatalogueLookup,
    PromptBuilder,
    SpanPrompt,
    SpanReply,
    approx_tokens,
    reply_model,
    response_format,
)
from icdcoder.services.verifier.vllm_wire import (
    RETRY_STATUSES,
    Completion,
    Fatal,
    Retryable,
    UsageStats,
    VerifierUnavailableError,
    describe,
    retry_after,
)
from icdcoder.shared.logging import get_logger
from icdcoder.shared.messages import (
    RetrievedNote,
    SpanCandidates,
    Verdict,
    VerifiedNote,
    VerifierInfo,
)
from icdcoder.shared.settings import VllmConfig

log = get_logger(__name__)

BACKEND = "vllm"
__all__ = [
    "NONE_CODE",
    "PromptBuilder",
    "VerifierUnavailableError",
    "VllmVerifier",
    "approx_tokens",
]


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
            except Fatal as fatal:
                raise VerifierUnavailableError(item.span.span_id, attempt, fatal.reason) from None
            except Retryable as failed:
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
            raise Retryable(f"timeout ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            raise Retryable(f"connection error ({type(exc).__name__})") from None
        status = response.status_code
        if status in RETRY_STATUSES:
            raise Retryable(f"HTTP {status}", retry_after(response))
        if status >= 400:
            raise Fatal(f"HTTP {status}")
        try:
            completion = Completion.model_validate_json(response.content)
        except ValidationError as exc:
            usage.malformed += 1
            raise Retryable(f"malformed response: {describe(exc)}") from None
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
            raise Retryable(f"malformed reply: {describe(exc)}") from None
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
