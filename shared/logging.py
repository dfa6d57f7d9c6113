"""structlog setup: JSON lines off a tty, readable console on one; context vars per message.

Bind ``note_id`` and ``stage`` with :func:`structlog.contextvars.bound_contextvars` around each
message and emit one canonical line per message. Never pass note or span text to a logger:
it is patient data. Log ids, counts, codes and timings only.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog


def configure_logging(
    level: str = "INFO", *, json: bool | None = None, stream: TextIO | None = None
) -> None:
    """Configure structlog once per process.

    Workers log to stdout (the container convention); the CLI passes ``sys.stderr`` so its
    results on stdout stay clean. ``json=None`` picks JSON when the stream is not a tty.
    """
    out = stream if stream is not None else sys.stdout
    if json is None:
        json = not out.isatty()
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.dict_tracebacks,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=True,
    )


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(name)
    return logger
