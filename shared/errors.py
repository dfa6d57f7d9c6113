"""One-line descriptions of errors: the one place that summarises a validation error.

:func:`describe_error` is the reason kept with a failed message or shown to a user (a dead
letter, an HTTP 422, a CLI error line): field paths and error types, never the rejected input.
:func:`loggable` is what a log line may carry: the same for validation errors and the classes
:func:`icdcoder.shared.logging.public_message` trusts, the type alone for the rest.
"""

from __future__ import annotations

from pydantic import ValidationError


def describe_validation(exc: ValidationError, *, messages: bool = True) -> str:
    """``loc: message [type]`` per problem (``messages=False``: ``loc: type``), input left out."""
    problems = []
    for err in exc.errors(include_url=False, include_input=False, include_context=False):
        where = ".".join(str(part) for part in err["loc"]) or "<root>"
        problems.append(
            f"{where}: {err['msg']} [{err['type']}]" if messages else f"{where}: {err['type']}"
        )
    return "; ".join(problems)


def describe_error(exc: BaseException) -> str:
    """A one-line reason; for validation errors, field paths and types but never the input."""
    if isinstance(exc, ValidationError):
        return f"invalid {exc.title}: {describe_validation(exc)}"
    return f"{type(exc).__name__}: {exc}"


def loggable(exc: BaseException) -> str:
    """What a log line may say about ``exc`` (see :mod:`icdcoder.shared.logging`)."""
    from icdcoder.shared.logging import WITHHELD, public_message

    message = public_message(exc)
    if isinstance(exc, ValidationError):
        return message
    return type(exc).__name__ if message == WITHHELD else f"{type(exc).__name__}: {message}"
