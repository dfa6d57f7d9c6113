"""The vLLM verifier backend against a fake OpenAI-compatible server (httpx.MockTransport)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from icdcoder.services.verifier.prompts import PROMPT_VERSION, load_template
from icdcoder.services.verifier.vllm_backend import (
    NONE_CODE,
    PromptBuilder,
    VerifierUnavailableError,
    VllmVerifier,
    approx_tokens,
)
from icdcoder.shared.messages import Candidate, RetrievedNote, Span, SpanCandidates
from icdcoder.shared.settings import VllmConfig
from tests.fakes import make_span

NOTE = (
    "History: mother with breast cancer. The patient has type 2 diabetes mellitus. "
    "No evidence of pneumonia. Essential hypertension, treated."
)
BASE_URL = "http://vllm.test/v1"


@dataclass(frozen=True)
class FakeCode:
    code: str
    description: str
    inclusion_terms: tuple[str, ...] = ()
    excludes1: tuple[str, ...] = ()
    code_first: tuple[str, ...] = ()


@dataclass
class FakeCatalogue:
    codes: dict[str, FakeCode] = field(default_factory=dict)

    def get(self, code: str) -> FakeCode | None:
        return self.codes.get(code)


CATALOGUE = FakeCatalogue(
    {
        "E11.9": FakeCode(
            "E11.9",
            "Type 2 diabetes mellitus without complications",
            inclusion_terms=("Type 2 diabetes mellitus NOS",),
            excludes1=("type 1 diabetes mellitus (E10.-)",),
            code_first=("underlying condition",),
        ),
        "E10.9": FakeCode("E10.9", "Type 1 diabetes mellitus without complications"),
        "J18.9": FakeCode("J18.9", "Pneumonia, unspecified organism"),
        "I10": FakeCode("I10", "Essential (primary) hypertension", ("high blood pressure",)),
        "Z80.3": FakeCode("Z80.3", "Family history of malignant neoplasm of breast"),
    }
)


def sentence_span(text: str, note: str, span_id: str, section: str = "", **flags: bool) -> Span:
    """A span over ``text`` whose sentence runs between the surrounding full stops."""
    span = make_span(text, note, span_id, section, **flags)
    lo = note.rfind(". ", 0, span.start)
    lo = 0 if lo < 0 else lo + 2
    hi = note.find(".", span.end)
    hi = len(note) if hi < 0 else hi + 1
    return span.model_copy(update={"sentence_start": lo, "sentence_end": hi})


def cand(code: str, score: float = 0.8) -> Candidate:
    info = CATALOGUE.codes[code]
    return Candidate(code=code, description=info.description, score=score, matched=info.description)


def make_note(*, extra_empty: bool = False) -> RetrievedNote:
    items = [
        SpanCandidates(
            span=sentence_span("type 2 diabetes mellitus", NOTE, "s0001"),
            candidates=[cand("E11.9", 0.9), cand("E10.9", 0.7)],
        ),
        SpanCandidates(
            span=make_span("pneumonia", NOTE, "s0002", section="Assessment", negated=True),
            candidates=[cand("J18.9")],
        ),
        SpanCandidates(
            span=make_span("Essential hypertension", NOTE, "s0003"),
            candidates=[cand("I10", 0.95), cand("E11.9", 0.2)],
        ),
    ]
    if extra_empty:
        items.append(SpanCandidates(span=make_span("breast cancer", NOTE, "s0004"), candidates=[]))
    return RetrievedNote(note_id="n1", text=NOTE, catalogue_version="test", items=items)


def settings(**overrides: Any) -> VllmConfig:
    values: dict[str, Any] = {
        "base_url": BASE_URL,
        "model": "test-model",
        "api_key": SecretStr("sekrit"),
        "timeout_s": 5.0,
        "max_concurrency": 4,
        "max_retries": 3,
        **overrides,
    }
    return VllmConfig(**values)


def completion(
    content: str | None,
    *,
    prompt_tokens: int = 100,
    completion_tokens: int = 20,
    finish_reason: str = "stop",
) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "test-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": finish_reason,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def enum_of(body: dict[str, Any]) -> list[str]:
    schema = body["response_format"]["json_schema"]["schema"]
    return list(schema["properties"]["code"]["enum"])


def reply_for(body: dict[str, Any], **fields: Any) -> str:
    """A valid reply picking the first candidate of the request's enum."""
    data = {
        "code": enum_of(body)[0],
        "decision": "accept",
        "confidence": 0.9,
        "justification": "The phrase names the condition.",
        **fields,
    }
    return json.dumps(data)


@dataclass
class FakeServer:
    """Records requests; ``script`` answers them (default: a valid reply for each)."""

    script: Callable[[httpx.Request, dict[str, Any], int], Awaitable[httpx.Response]] | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    raw: list[httpx.Request] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.requests.append(body)
        self.raw.append(request)
        n = len(self.requests)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.01)
            if self.script is not None:
                return await self.script(request, body, n)
            return httpx.Response(200, json=completion(reply_for(body)))
        finally:
            self.in_flight -= 1


@dataclass
class Sleeps:
    delays: list[float] = field(default_factory=list)

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def verifier(server: FakeServer, sleeps: Sleeps | None = None, **overrides: Any) -> VllmVerifier:
    client = httpx.AsyncClient(transport=httpx.MockTransport(server))
    return VllmVerifier(settings(**overrides), CATALOGUE, client=client, sleep=sleeps or Sleeps())


# --- request shape ----------------------------------------------------------------------


async def test_request_shape_one_constrained_request_per_span() -> None:
    server = FakeServer()
    result = await verifier(server).verify(make_note(extra_empty=True))

    assert len(server.requests) == 3  # the span without candidates is not sent
    for request in server.raw:
        assert request.method == "POST"
        assert str(request.url) == f"{BASE_URL}/chat/completions"
        assert request.headers["authorization"] == "Bearer sekrit"
    by_span = {}
    for body in server.requests:
        assert body["model"] == "test-model"
        assert body["temperature"] == 0
        assert body["max_tokens"] > 0
        assert [m["role"] for m in body["messages"]] == ["system", "user"]
        assert PROMPT_VERSION in body["messages"][0]["content"]
        rf = body["response_format"]
        assert rf["type"] == "json_schema"
        schema = rf["json_schema"]["schema"]
        assert schema["type"] == "object"
        assert schema["additionalProperties"] is False
        assert set(schema["required"]) == {"code", "decision", "confidence", "justification"}
        assert schema["properties"]["decision"]["enum"] == ["accept", "reject", "review"]
        user = body["messages"][1]["content"]
        by_span[user.split('Phrase: "')[1].split('"')[0]] = (enum_of(body), user)

    assert set(by_span) == {"type 2 diabetes mellitus", "pneumonia", "Essential hypertension"}
    enum, user = by_span["type 2 diabetes mellitus"]
    assert enum == ["E11.9", "E10.9", NONE_CODE]
    assert "E11.9: Type 2 diabetes mellitus without complications" in user
    assert "includes: Type 2 diabetes mellitus NOS" in user
    assert "Excludes1: type 1 diabetes mellitus (E10.-)" in user
    assert "code first: underlying condition" in user
    assert "The patient has type 2 diabetes mellitus." in user  # the sentence
    assert "Context flags: none" in user
    enum, user = by_span["pneumonia"]
    assert enum == ["J18.9", NONE_CODE]
    assert "Context flags: negated" in user
    assert "Section: Assessment" in user
    assert by_span["Essential hypertension"][0] == ["I10", "E11.9", NONE_CODE]

    assert result.verifier.backend == "vllm"
    assert result.verifier.model == "test-model"
    assert result.verifier.prompt_version == PROMPT_VERSION


async def test_verdicts_map_replies_and_usage_is_summed() -> None:
    async def script(_: httpx.Request, body: dict[str, Any], n: int) -> httpx.Response:
        codes = enum_of(body)
        if codes[0] == "J18.9":  # the negated span: the model says no candidate fits
            content = reply_for(body, code="NONE", decision="accept", confidence=0.2)
        elif codes[0] == "E11.9":
            content = reply_for(body, code="E11.9", decision="review", confidence=0.55)
        else:
            content = reply_for(body, code="I10", justification="  Hypertension is named.  ")
        return httpx.Response(200, json=completion(content, prompt_tokens=100 + n))

    server = FakeServer(script=script)
    result = await verifier(server).verify(make_note())

    verdicts = {v.span_id: v for v in result.verdicts}
    assert set(verdicts) == {"s0001", "s0002", "s0003"}
    assert (verdicts["s0001"].code, verdicts["s0001"].decision) == ("E11.9", "review")
    assert verdicts["s0001"].confidence == pytest.approx(0.55)
    # NONE -> a reject of the top candidate, whatever decision the model wrote
    assert (verdicts["s0002"].code, verdicts["s0002"].decision) == ("J18.9", "reject")
    assert verdicts["s0003"].justification == "Hypertension is named."
    assert result.verifier.prompt_tokens == 101 + 102 + 103
    assert result.verifier.completion_tokens == 60
    assert result.items == make_note().items
    assert "verifier" in result.timings


# --- retries and failure ----------------------------------------------------------------


def single_span_note() -> RetrievedNote:
    note = make_note()
    return note.model_copy(update={"items": note.items[:1]})


async def test_retries_429_503_timeout_then_succeeds_honouring_retry_after() -> None:
    async def script(request: httpx.Request, body: dict[str, Any], n: int) -> httpx.Response:
        if n == 1:
            return httpx.Response(429, headers={"Retry-After": "7"}, json={"error": "busy"})
        if n == 2:
            return httpx.Response(503, text="overloaded")
        if n == 3:
            raise httpx.ReadTimeout("slow", request=request)
        return httpx.Response(200, json=completion(reply_for(body)))

    server, sleeps = FakeServer(script=script), Sleeps()
    result = await verifier(server, sleeps, max_retries=3).verify(single_span_note())

    assert len(server.requests) == 4
    assert [v.code for v in result.verdicts] == ["E11.9"]
    assert len(sleeps.delays) == 3
    assert sleeps.delays[0] >= 7.0  # Retry-After is a floor
    assert all(0.0 <= d <= 30.0 for d in sleeps.delays)
    assert result.verifier.prompt_tokens == 100  # only the answered request reported usage


async def test_backoff_grows_and_is_jittered_under_a_cap() -> None:
    async def always_503(_: httpx.Request, body: dict[str, Any], n: int) -> httpx.Response:
        return httpx.Response(503)

    sleeps = Sleeps()
    v = verifier(FakeServer(script=always_503), sleeps, max_retries=6)
    with pytest.raises(VerifierUnavailableError):
        await v.verify(single_span_note())
    # full jitter: attempt k waits in [0, min(30, 0.5 * 2**(k-1))]
    caps = [min(30.0, 0.5 * 2**k) for k in range(6)]
    assert len(sleeps.delays) == 6
    assert all(0.0 <= d <= cap for d, cap in zip(sleeps.delays, caps, strict=True))


async def test_gives_up_after_max_retries_with_a_specific_error() -> None:
    async def always_503(_: httpx.Request, body: dict[str, Any], n: int) -> httpx.Response:
        return httpx.Response(503)

    server, sleeps = FakeServer(script=always_503), Sleeps()
    with pytest.raises(VerifierUnavailableError) as caught:
        await verifier(server, sleeps, max_retries=2).verify(single_span_note())

    assert len(server.requests) == 3  # 1 try + 2 retries
    assert len(sleeps.delays) == 2
    err = caught.value
    assert (err.span_id, err.attempts) == ("s0001", 3)
    assert "HTTP 503" in str(err)
    # the bus worker dead-letters ValueErrors at once; this must stay a retryable RuntimeError
    assert isinstance(err, RuntimeError)
    assert not isinstance(err, ValueError)


async def test_timeouts_exhaust_retries() -> None:
    async def hang(request: httpx.Request, body: dict[str, Any], n: int) -> httpx.Response:
        raise httpx.ConnectTimeout("no answer", request=request)

    server = FakeServer(script=hang)
    with pytest.raises(VerifierUnavailableError, match="timeout"):
        await verifier(server, max_retries=1).verify(single_span_note())
    assert len(server.requests) == 2


async def test_real_timeout_from_settings_applies() -> None:
    async def slow(_: httpx.Request, body: dict[str, Any], n: int) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200, json=completion(reply_for(body)))

    async def server_app(request: httpx.Request) -> httpx.Response:
        return await slow(request, json.loads(request.content), 1)

    # MockTransport ignores timeouts; run the handler under the client's timeout ourselves.
    class TimeoutTransport(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            timeout = request.extensions["timeout"]["read"]
            try:
                return await asyncio.wait_for(server_app(request), timeout)
            except TimeoutError:
                raise httpx.ReadTimeout("read timed out", request=request) from None

    client = httpx.AsyncClient(transport=TimeoutTransport())
    v = VllmVerifier(
        settings(timeout_s=0.05, max_retries=0), CATALOGUE, client=client, sleep=Sleeps()
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(VerifierUnavailableError, match="timeout"):
        await v.verify(single_span_note())
    assert loop.time() - started < 2.0


async def test_client_errors_are_not_retried() -> None:
    async def bad_request(_: httpx.Request, body: dict[str, Any], n: int) -> httpx.Response:
        return httpx.Response(400, json={"error": {"message": "bad schema"}})

    server, sleeps = FakeServer(script=bad_request), Sleeps()
    with pytest.raises(VerifierUnavailableError, match="HTTP 400") as caught:
        await verifier(server, sleeps).verify(single_span_note())
    assert len(server.requests) == 1
    assert sleeps.delays == []
    assert caught.value.attempts == 1


async def test_one_failing_span_fails_the_note_and_cancels_the_rest() -> None:
    async def script(_: httpx.Request, body: dict[str, Any], n: int) -> httpx.Response:
        if enum_of(body)[0] == "J18.9":
            return httpx.Response(401)
        await asyncio.sleep(10)  # the other spans would hang: they must be cancelled
        return httpx.Response(200, json=completion(reply_for(body)))

    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(VerifierUnavailableError, match="s0002"):
        await verifier(FakeServer(script=script)).verify(make_note())
    assert loop.time() - started < 5


# --- malformed replies ------------------------------------------------------------------


MALFORMED: dict[str, Callable[[dict[str, Any]], httpx.Response]] = {
    "not json": lambda body: httpx.Response(200, json=completion("Sure! The code is E11.9")),
    "code not in enum": lambda body: httpx.Response(
        200, json=completion(reply_for(body, code="Z99.89"))
    ),
    "malformed code": lambda body: httpx.Response(
        200, json=completion(reply_for(body, code="e11.9"))
    ),
    "missing field": lambda body: httpx.Response(
        200,
        json=completion(json.dumps({"code": "E11.9", "decision": "accept", "confidence": 0.9})),
    ),
    "extra field": lambda body: httpx.Response(
        200, json=completion(reply_for(body, reasoning="long thoughts"))
    ),
    "bad decision": lambda body: httpx.Response(
        200, json=completion(reply_for(body, decision="maybe"))
    ),
    "confidence out of range": lambda body: httpx.Response(
        200, json=completion(reply_for(body, confidence=1.5))
    ),
    "blank justification": lambda body: httpx.Response(
        200, json=completion(reply_for(body, justification="   "))
    ),
    "truncated": lambda body: httpx.Response(
        200, json=completion(reply_for(body)[:30], finish_reason="length")
    ),
    "null content": lambda body: httpx.Response(200, json=completion(None)),
    "no choices": lambda body: httpx.Response(200, json={"choices": [], "usage": None}),
    "body not json": lambda body: httpx.Response(200, text="<html>proxy error</html>"),
}


@pytest.mark.parametrize("kind", sorted(MALFORMED))
async def test_malformed_replies_are_retried_then_rejected(kind: str) -> None:
    async def script(_: httpx.Request, body: dict[str, Any], n: int) -> httpx.Response:
        return MALFORMED[kind](body)

    server = FakeServer(script=script)
    with pytest.raises(VerifierUnavailableError, match="malformed") as caught:
        await verifier(server, max_retries=1).verify(single_span_note())
    assert len(server.requests) == 2
    assert "sure!" not in str(caught.value).lower()  # reply text never in the reason


async def test_malformed_then_valid_reply_recovers() -> None:
    async def script(_: httpx.Request, body: dict[str, Any], n: int) -> httpx.Response:
        if n == 1:
            return MALFORMED["code not in enum"](body)
        return httpx.Response(200, json=completion(reply_for(body), prompt_tokens=50))

    server = FakeServer(script=script)
    v = verifier(server)
    result = await v.verify(single_span_note())
    assert [v.code for v in result.verdicts] == ["E11.9"]
    assert result.verifier.prompt_tokens == 100 + 50  # the wasted attempt's tokens count too
    stats = v.stats
    assert (stats.spans, stats.requests, stats.retries, stats.malformed) == (1, 2, 1, 1)
    await v.verify(single_span_note())  # totals accumulate across notes
    assert (v.stats.spans, v.stats.requests, v.stats.malformed) == (2, 3, 1)
    assert v.stats.prompt_tokens == 100 + 50 + 50


# --- concurrency ------------------------------------------------------------------------


def wide_note(spans: int) -> RetrievedNote:
    words = [f"word{i}" for i in range(spans)]
    text = " ".join(words)
    items = [
        SpanCandidates(span=make_span(w, text, f"s{i:04d}"), candidates=[cand("I10")])
        for i, w in enumerate(words)
    ]
    return RetrievedNote(note_id="wide", text=text, catalogue_version="test", items=items)


async def test_spans_are_sent_concurrently_but_bounded() -> None:
    server = FakeServer()
    result = await verifier(server, max_concurrency=3).verify(wide_note(12))
    assert len(server.requests) == 12
    assert server.max_in_flight == 3
    assert [v.span_id for v in result.verdicts] == [f"s{i:04d}" for i in range(12)]


async def test_concurrency_bound_holds_during_retries() -> None:
    async def flaky(_: httpx.Request, body: dict[str, Any], n: int) -> httpx.Response:
        if n % 2:
            return httpx.Response(502)
        return httpx.Response(200, json=completion(reply_for(body)))

    server = FakeServer(script=flaky)
    result = await verifier(server, max_concurrency=2, max_retries=10).verify(wide_note(8))
    assert len(result.verdicts) == 8
    assert server.max_in_flight <= 2


# --- prompt -----------------------------------------------------------------------------


def test_prompt_is_trimmed_to_the_budget_and_the_enum_follows() -> None:
    long_notes = FakeCatalogue(
        {
            f"C{i:02d}": FakeCode(
                f"C{i:02d}",
                f"Condition number {i} " + "with a long description " * 3,
                inclusion_terms=tuple(f"inclusion term {j} " * 8 for j in range(5)),
                excludes1=tuple(f"excluded thing {j} " * 8 for j in range(5)),
            )
            for i in range(20)
        }
    )
    item = SpanCandidates(
        span=make_span("diabetes", NOTE.replace("diabetes mellitus", "diabetes")),
        candidates=[
            Candidate(code=c.code, description=c.description, score=0.5, matched=c.description)
            for c in long_notes.codes.values()
        ],
    )
    text = NOTE.replace("diabetes mellitus", "diabetes")
    template = load_template()
    roomy = PromptBuilder(template, long_notes, token_budget=100_000, max_candidates=20)
    tight = PromptBuilder(template, long_notes, token_budget=500, max_candidates=20)
    tiny = PromptBuilder(template, long_notes, token_budget=10, max_candidates=20)

    full = roomy.build(item, text)
    assert len(full.codes) == 20
    assert full.user.count("includes:") == 20 * 3  # notes_per_kind
    trimmed = tight.build(item, text)
    assert approx_tokens(trimmed.system) + approx_tokens(trimmed.user) <= 500
    assert 0 < len(trimmed.codes) < 20
    assert trimmed.codes == full.codes[: len(trimmed.codes)]  # the tail goes first
    for code in trimmed.codes:
        assert f"{code}: Condition" in trimmed.user
    assert "C19" not in trimmed.user
    # over budget even without notes: the top candidate is still asked about
    assert tiny.build(item, text).codes == ("C00",)
    assert "includes:" not in tiny.build(item, text).user


def test_unknown_prompt_version_is_an_error() -> None:
    with pytest.raises(ValueError, match="verify-v999"):
        load_template("verify-v999")


async def test_request_enum_matches_the_candidates_shown() -> None:
    server = FakeServer()
    v = verifier(server)
    note = wide_note(1)
    item = note.items[0]
    many = [cand(c) for c in ("I10", "E11.9", "E10.9", "J18.9", "Z80.3")]
    note = note.model_copy(update={"items": [item.model_copy(update={"candidates": many})]})
    small = VllmVerifier(
        settings(),
        CATALOGUE,
        client=httpx.AsyncClient(transport=httpx.MockTransport(server)),
        max_candidates=2,
    )
    await small.verify(note)
    assert enum_of(server.requests[-1]) == ["I10", "E11.9", NONE_CODE]
    assert "J18.9" not in server.requests[-1]["messages"][1]["content"]
    await v.aclose()


# --- hygiene ----------------------------------------------------------------------------


async def test_logs_count_usage_and_never_carry_text() -> None:
    async def script(_: httpx.Request, body: dict[str, Any], n: int) -> httpx.Response:
        if n == 1:
            return httpx.Response(503)
        return httpx.Response(200, json=completion(reply_for(body), completion_tokens=7))

    with capture_logs() as logs:
        await verifier(FakeServer(script=script)).verify(make_note())
    summary = [e for e in logs if e["event"] == "vllm_verify"]
    assert len(summary) == 1
    assert summary[0]["spans"] == 3
    assert summary[0]["requests"] == 4
    assert summary[0]["retries"] == 1
    assert summary[0]["prompt_tokens"] == 300
    assert summary[0]["completion_tokens"] == 21
    assert any(e["event"] == "vllm_retry" and e["reason"] == "HTTP 503" for e in logs)
    dumped = json.dumps(logs, default=str).lower()
    for secret in ("diabetes", "pneumonia", "hypertension", "phrase names"):
        assert secret not in dumped


async def test_aclose_closes_only_an_owned_client() -> None:
    shared = httpx.AsyncClient(transport=httpx.MockTransport(FakeServer()))
    await VllmVerifier(settings(), CATALOGUE, client=shared).aclose()
    assert not shared.is_closed
    await shared.aclose()


def test_info_names_backend_model_and_prompt() -> None:
    info = VllmVerifier(settings(model="m"), CATALOGUE).info
    assert (info.backend, info.model, info.prompt_version) == ("vllm", "m", PROMPT_VERSION)
    assert (info.prompt_tokens, info.completion_tokens) == (0, 0)
