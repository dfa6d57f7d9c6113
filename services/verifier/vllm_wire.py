"""The vLLM verifier's side of the wire: the chat-completions reply it reads, what it counts,
and how failed requests are classified and retried.

HTTP 429 and 5xx, timeouts, connection errors and malformed replies are retried
(:class:`Retryable`, honouring ``Retry-After``); another 4xx is fatal at once (:class:`Fatal`);
either way, past the retries, :class:`VerifierUnavailableError` (a ``RuntimeError``) leaves the
bus message pending for a later retry.
"""

from __future__ import annotations

import email.utils
import time
from dataclasses import dataclass

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from icdcoder.shared.errors import describe_validation

#: HTTP statuses worth retrying: rate limited, and server-side trouble.
RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


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


class Retryable(Exception):
    """One failed attempt that may succeed if tried again."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class Fatal(Exception):
    """A failed attempt that retrying cannot fix (e.g. HTTP 400, 401, 404)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


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


class Completion(_Envelope):
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


def describe(exc: BaseException) -> str:
    """What failed, without the reply text (it may echo patient text)."""
    if isinstance(exc, ValidationError):
        return describe_validation(exc, messages=False)
    return str(exc)


def retry_after(response: httpx.Response) -> float | None:
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
