"""structlog setup: JSON lines off a tty, readable console on one; context vars per message.

Bind ``note_id`` and ``stage`` with :func:`structlog.contextvars.bound_contextvars` around each
message and emit one canonical line per message. Never pass note or span text to a logger:
it is patient data. Log ids, counts, codes and timings only.

Exceptions are where text slips in unasked: a traceback's local variables hold the note being
processed and the Redis password, and many exception messages quote their input (a validation
error prints the value it rejected). So an exception is rendered as its type, its frames (file,
line, function: no locals, no source) and a message only where the exception's class is known
to say nothing about the data (:func:`public_message`); every string that reaches the output is
stripped of URL credentials. Standard-library loggers (uvicorn, FastStream, SQLAlchemy) go
through the same processors.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
from collections.abc import Iterator, MutableMapping
from typing import Any, TextIO

import structlog
from pydantic import ValidationError
from structlog.tracebacks import ExceptionDictTransformer
from structlog.typing import ExcInfo, WrappedLogger

#: What replaces the message of an exception whose class may quote patient text.
WITHHELD = "message withheld: it may quote patient text"
#: Longest exception message kept.
MAX_MESSAGE = 300

_CREDENTIALS_RE = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/\s@]*@", re.IGNORECASE)
_SECRET_PAIR_RE = re.compile(
    r"(?P<key>\b(?:password|passwd|pwd|secret|token|api[_-]?key|auth_args)\b\s*[=:]\s*)\S+",
    re.IGNORECASE,
)


class PublicError(Exception):
    """An error whose message never holds patient text or secrets: safe to log as it is.

    Raise subclasses of it for problems the operator must read (a note too long, a malformed
    setting); their messages say what is wrong in terms of sizes, names and ids only.
    """


def scrub(text: str) -> str:
    """``text`` without URL credentials (``redis://:pw@host`` -> ``redis://***@host``) or
    ``password=...`` pairs."""
    text = _CREDENTIALS_RE.sub(r"\g<scheme>***@", text)
    return _SECRET_PAIR_RE.sub(r"\g<key>***", text)


def _public_types() -> tuple[type[BaseException], ...]:
    types: list[type[BaseException]] = [
        PublicError,
        OSError,  # connection refused, file not found: paths and addresses, not data
        TimeoutError,
        asyncio.CancelledError,
        KeyboardInterrupt,
        SystemExit,
        MemoryError,
        RecursionError,
    ]
    try:
        from redis.exceptions import RedisError

        types.append(RedisError)
    except ImportError:  # pragma: no cover - redis is a dependency
        pass
    return tuple(types)


_PUBLIC = _public_types()


def public_message(exc: BaseException) -> str:
    """What a log may say about ``exc``: its message for classes that never quote their input,
    a summary without input values for validation errors, else :data:`WITHHELD`."""
    if isinstance(exc, ValidationError):
        from icdcoder.shared.errors import describe_error

        return describe_error(exc)
    if isinstance(exc, _PUBLIC):
        return scrub(str(exc))[:MAX_MESSAGE]
    return WITHHELD


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    """``exc``, its causes and contexts, and the members of exception groups."""
    seen: set[int] = set()
    todo = [exc] if exc is not None else []
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo.extend(e for e in (current.__cause__, current.__context__) if e is not None)
        todo.extend(getattr(current, "exceptions", ()))


class SafeTracebacks:
    """structlog's :class:`ExceptionDictTransformer` without locals, with public messages only."""

    def __init__(self, max_frames: int = 20) -> None:
        self._transform = ExceptionDictTransformer(
            show_locals=False, max_frames=max_frames, use_rich=False
        )

    def __call__(self, exc_info: ExcInfo) -> list[dict[str, Any]]:
        allowed = {str(e): public_message(e) for e in _chain(exc_info[1])}
        stacks = self._transform(exc_info)
        for stack in _stacks(stacks):
            stack["exc_value"] = allowed.get(stack.get("exc_value", ""), WITHHELD)
            stack.pop("exc_notes", None)
            if stack.get("syntax_error"):
                stack["syntax_error"] = None
            for frame in stack.get("frames", []):
                frame.pop("locals", None)
        return stacks


def _stacks(stacks: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for stack in stacks:
        yield stack
        for group in stack.get("exceptions", []):
            yield from _stacks(group)


def scrub_strings(
    _: WrappedLogger, __: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Strip credentials from every string value of the event (a URL logged by a library)."""
    for key, value in event_dict.items():
        if isinstance(value, str):
            event_dict[key] = scrub(value)
    return event_dict


def _drop_stdlib_extras(
    _: WrappedLogger, __: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Standard-library records: keep their logger name, drop what structlog adds for them."""
    event_dict.pop("_record", None)
    event_dict.pop("_from_structlog", None)
    return event_dict


def _processors() -> list[structlog.typing.Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.ExceptionRenderer(SafeTracebacks()),
        scrub_strings,
    ]


def configure_logging(
    level: str = "INFO", *, json: bool | None = None, stream: TextIO | None = None
) -> None:
    """Configure structlog and the standard library's root logger once per process.

    Workers and servers log to stdout (the container convention); the CLI passes
    ``sys.stderr`` so its results on stdout stay clean. ``json=None`` picks JSON when the
    stream is not a tty.
    """
    out = stream if stream is not None else sys.stdout
    if json is None:
        json = not out.isatty()
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    )
    numeric = logging.getLevelName(level.upper())
    structlog.configure(
        processors=[*_processors(), renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name],
            processors=[
                *_processors(),
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                _drop_stdlib_extras,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(name)
    return logger
