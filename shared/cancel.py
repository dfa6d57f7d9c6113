"""Stopping a core call that runs in a thread: cooperative cancellation between batches.

A stage runs its core in a worker thread so the event loop keeps answering health checks. When
the worker stops (SIGTERM) and the note in hand is still being processed after the graceful
timeout, the handler is cancelled, but a thread cannot be: it would run on to the end of a long
note. So :func:`in_thread` hands the thread an event through a context variable
(``asyncio.to_thread`` copies the context), sets it on cancellation, and the core calls
:func:`checkpoint` between batches of spans: the thread stops within one batch, the entry stays
pending, and another replica takes it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import TypeVar

from icdcoder.shared.logging import PublicError

In = TypeVar("In")
Out = TypeVar("Out")

_stop: ContextVar[threading.Event | None] = ContextVar("icdcoder_stop", default=None)


class Cancelled(PublicError):
    """The call was stopped at a checkpoint: the worker is shutting down."""


def checkpoint() -> None:
    """Raise :class:`Cancelled` if the call this thread runs was cancelled; else nothing."""
    event = _stop.get()
    if event is not None and event.is_set():
        raise Cancelled("stopped between batches: the worker is shutting down")


def in_thread(fn: Callable[[In], Out]) -> Callable[[In], Awaitable[Out]]:
    """``fn`` as a coroutine function run in a worker thread, stoppable at its checkpoints."""

    async def run(value: In) -> Out:
        event = threading.Event()
        token = _stop.set(event)
        try:
            return await asyncio.to_thread(fn, value)
        except asyncio.CancelledError:
            event.set()
            raise
        finally:
            _stop.reset(token)

    return run
