"""How the API gets notes coded: in its own process, or through the Redis workers.

Either way a note version is registered in the store first (so nothing is lost), and its
status there is the truth the API reports.

- :class:`InProcessCoding` (the embedded default, no Redis): one coding task takes note versions
  from a queue, codes them with the pipeline (CPU work in threads, so the event loop keeps
  answering), and stores the result or the failure. At start it requeues what a previous run
  left queued or half-coded.
- :class:`BusCoding`: publishes the note to the notes stream; the stage workers code it and the
  store worker (``icdcoder worker store``) writes the result; the API watches the store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import suppress
from typing import Protocol

from redis.asyncio import Redis
from sqlalchemy import select

from icdcoder.shared.errors import describe_error, loggable
from icdcoder.shared.logging import PublicError, get_logger
from icdcoder.shared.messages import CodedNote, NoteIn
from icdcoder.shared.settings import BusConfig
from icdcoder.shared.store.repository import NoteVersion, Store
from icdcoder.shared.store.schema import Note

log = get_logger("icdcoder.api")

DONE = ("coded", "failed")


class Coder(Protocol):
    async def code_in_threads(self, note: NoteIn) -> CodedNote: ...


class Coding(Protocol):
    @property
    def ready(self) -> bool: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def submit(self, version: NoteVersion, note: NoteIn, *, fresh: bool) -> None:
        """Have the version coded (``fresh``: registered by this request)."""

    async def wait(self, version: NoteVersion, timeout_s: float) -> str: ...


class InProcessCoding:
    def __init__(self, store: Store, make_coder: Callable[[], Coder]) -> None:
        self.store = store
        self._make_coder = make_coder
        self._coder: Coder | None = None
        self._queue: asyncio.Queue[tuple[int, NoteIn]] = asyncio.Queue()
        self._pending: set[int] = set()
        self._done: dict[int, asyncio.Event] = {}
        self._task: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        return self._coder is not None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task

    async def submit(self, version: NoteVersion, note: NoteIn, *, fresh: bool) -> None:
        if version.pk in self._pending:
            return
        self._pending.add(version.pk)
        self._done.setdefault(version.pk, asyncio.Event())
        await self._queue.put((version.pk, note))

    async def wait(self, version: NoteVersion, timeout_s: float) -> str:
        event = self._done.get(version.pk)
        if event is not None and timeout_s > 0:
            with suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), timeout_s)
        return (await asyncio.to_thread(self.store.statuses, [version.pk])).get(version.pk, "")

    async def _run(self) -> None:
        self._coder = await asyncio.to_thread(self._make_coder)
        log.info("coder_loaded")
        await self._requeue()
        while True:
            pk, note = await self._queue.get()
            await self._code(pk, note)

    async def _requeue(self) -> None:
        """Versions a previous run left queued or half-coded, with their text, coded again."""

        def left() -> list[tuple[int, str, str]]:
            with self.store.session() as session:
                rows = session.execute(
                    select(Note.id, Note.note_id, Note.text).where(
                        Note.status.in_(("queued", "coding")), Note.text.is_not(None)
                    )
                )
                return [(pk, note_id, text) for pk, note_id, text in rows if text]

        for pk, note_id, text in await asyncio.to_thread(left):
            if pk in self._pending:  # submitted while the coder loaded: queued already
                continue
            self._pending.add(pk)
            self._done.setdefault(pk, asyncio.Event())
            await self._queue.put((pk, NoteIn(note_id=note_id, text=text)))

    async def _code(self, pk: int, note: NoteIn) -> None:
        coder = self._coder
        assert coder is not None
        await asyncio.to_thread(self.store.set_status, pk, "coding")
        try:
            coded = await coder.code_in_threads(note)
        except Exception as exc:
            reason = describe_error(exc) if isinstance(exc, PublicError) else type(exc).__name__
            log.error("coding_failed", note_id=note.note_id, error=loggable(exc))
            await asyncio.to_thread(
                lambda: self.store.save_failure(
                    stage="api", reason=reason, note_id=note.note_id, text=note.text
                )
            )
        else:
            kept = await asyncio.to_thread(lambda: self.store.save_result(coded, text=note.text))
            if not kept:  # this version had its result already: it is coded, not coding
                await asyncio.to_thread(self.store.set_status, pk, "coded")
            log.info("coded", note_id=note.note_id, codes=len(coded.codes))
        finally:
            self._pending.discard(pk)
            self._done.pop(pk, asyncio.Event()).set()


class BusCoding:
    def __init__(self, store: Store, bus: BusConfig, *, poll_s: float = 0.2) -> None:
        self.store = store
        self.bus = bus
        self.poll_s = poll_s
        self._redis: Redis | None = None
        self._ready = False

    @property
    def ready(self) -> bool:
        return self._ready

    async def start(self) -> None:
        from icdcoder.shared.bus.admin import connect, ensure_groups

        redis = connect(self.bus)
        await ensure_groups(redis)
        self._redis = redis
        self._ready = True

    async def stop(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()

    async def submit(self, version: NoteVersion, note: NoteIn, *, fresh: bool) -> None:
        """Publish the note, unless it was published already and still waits for its result
        (a resubmission while queued would only code it twice)."""
        from icdcoder.shared.bus.wire import encode_entry
        from icdcoder.shared.streams import NOTES

        assert self._redis is not None
        if fresh or version.status in ("failed", "coded"):
            await self._redis.xadd(NOTES, encode_entry(note))

    async def wait(self, version: NoteVersion, timeout_s: float) -> str:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            status = (await asyncio.to_thread(self.store.statuses, [version.pk])).get(
                version.pk, ""
            )
            if status in DONE or loop.time() >= deadline:
                return status
            await asyncio.sleep(self.poll_s)
