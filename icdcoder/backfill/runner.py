"""A backfill run: read notes from a source, code what is not coded yet, keep everything.

In process, notes are coded a batch at a time (the next batch retrieved while this one is
verified: ``Pipeline.code_batches``) and each result is committed to the store as it comes, so
Ctrl-C or a SIGKILL loses at most the two batches in hand. A rerun skips every note version
(id + content hash) that already has a result of the same pack: a changed note or a new pack
codes again; a row repeated within a run is coded once. A bad row (no id, empty, not UTF-8, NUL
characters, too long, a bad id, the same id with another text earlier in the run) is a failure
with its reason, recorded in the store, and never stops the run.

Over the bus (``BusBackfill``) the notes are registered in the store and published to the
notes stream with at most ``max_in_flight`` awaiting their result (backpressure); the store
worker (``icdcoder worker store``) writes results and dead letters, and the run waits for them.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain, islice
from typing import Protocol

from icdcoder.backfill.sources import SourceRow
from icdcoder.shared.errors import describe_error
from icdcoder.shared.logging import PublicError
from icdcoder.shared.messages import NOTE_ID_PATTERN, CodedNote, NoteIn
from icdcoder.shared.notes import NoteRejected, check_note_text, content_hash
from icdcoder.shared.store.repository import Store

_NOTE_ID_RE = re.compile(NOTE_ID_PATTERN)


class Coder(Protocol):
    def code_batches(
        self, batches: Iterable[Sequence[NoteIn]]
    ) -> AsyncIterator[list[CodedNote | Exception]]:
        """Each batch's results, in order (``Pipeline.code_batches``)."""
        ...


class Progress(Protocol):
    """A progress bar (``tqdm``): advance it, and show the failures so far beside it."""

    def update(self, n: float | None = 1) -> bool | None: ...

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None: ...


@dataclass
class Summary:
    """What a run did: notes coded, skipped (coded before), failed by reason."""

    coded: int = 0
    skipped: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def failures(self) -> int:
        return sum(self.failed.values())

    @property
    def notes_per_second(self) -> float:
        return self.coded / self.seconds if self.seconds else 0.0

    def postfix(self) -> str:
        return f"failed={self.failures:,} skipped={self.skipped:,}"

    def lines(self) -> list[str]:
        out = [
            f"coded {self.coded:,}, skipped {self.skipped:,} (coded before), failed "
            f"{self.failures:,} in {self.seconds:.1f} s ({self.notes_per_second:.2f} notes/s)"
        ]
        out += [f"  failed: {reason}: {n:,}" for reason, n in self.failed.most_common()]
        return out


@dataclass(frozen=True)
class Checked:
    row: SourceRow
    note: NoteIn
    digest: str


def check_row(row: SourceRow, max_chars: int, seen: dict[str, str]) -> Checked | tuple[str, str]:
    """The row as a note, or (failure kind, reason) when it cannot be coded."""
    if row.problem is not None:
        kind = "not UTF-8" if "UTF-8" in row.problem else "unreadable row"
        return kind, row.problem
    assert row.note_id is not None and row.text is not None
    if not _NOTE_ID_RE.match(row.note_id):
        return "bad id", "the id must be 1-200 letters, digits and . _ : -"
    try:
        check_note_text(row.text, max_chars)
    except NoteRejected as exc:
        kind = {"EmptyNoteError": "empty", "NoteTooLargeError": "too long"}.get(
            type(exc).__name__, "not text"
        )
        return kind, str(exc)
    digest = content_hash(row.text)
    earlier = seen.setdefault(row.note_id, digest)
    if earlier != digest:
        return "duplicate id", "this id came earlier in the run with another text"
    return Checked(row, NoteIn(note_id=row.note_id, text=row.text), digest)


def batched(rows: Iterable[SourceRow], size: int) -> Iterator[list[SourceRow]]:
    iterator = iter(rows)
    while chunk := list(islice(iterator, size)):
        yield chunk


class Backfill:
    """The in-process run (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        coder: Callable[[], Coder],
        *,
        pack: str,
        max_chars: int,
        batch: int = 16,
        progress: Progress | None = None,
    ) -> None:
        self.store = store
        self._make_coder = coder  # built on the first note to code: a resumed run may need none
        self._coder: Coder | None = None
        self.pack = pack
        self.max_chars = max_chars
        self.batch = batch
        self.progress = progress
        self.summary = Summary()
        self._seen: dict[str, str] = {}

    async def run(self, rows: Iterable[SourceRow]) -> Summary:
        started = time.perf_counter()
        # each chunk's size and notes to code, in step with the batches the coder is handed
        chunks: deque[tuple[int, list[Checked]]] = deque()

        def batches() -> Iterator[list[NoteIn]]:
            for chunk in batched(rows, self.batch):
                todo = self._intake(chunk)
                chunks.append((len(chunk), todo))
                yield [c.note for c in todo]

        try:
            work = batches()
            # a run whose first notes are all coded builds no pipeline for them (nor at all)
            for first in work:
                if first:
                    break
                self._advance(chunks.popleft()[0])
            else:
                return self.summary
            async for outcomes in self.coder().code_batches(chain([first], work)):
                size, todo = chunks.popleft()
                self._keep(todo, outcomes)
                self._advance(size)
        finally:
            self.summary.seconds = time.perf_counter() - started
        return self.summary

    def _advance(self, rows: int) -> None:
        if self.progress is not None:
            self.progress.update(rows)
            self.progress.set_postfix_str(self.summary.postfix())

    def _intake(self, chunk: list[SourceRow]) -> list[Checked]:
        """The chunk's rows that are notes to code: not coded before, and not met earlier in
        the run (its next batch is read before this one's results are kept). The others are
        counted; a bad row is recorded as a failure."""
        ready: list[Checked] = []
        for row in chunk:
            again = row.note_id in self._seen  # with another text, check_row refuses it
            checked = check_row(row, self.max_chars, self._seen)
            if not isinstance(checked, Checked):
                self._fail(row, "intake", *checked)
            elif again:
                self.summary.skipped += 1
            else:
                ready.append(checked)
        done = self.store.coded_versions(((c.note.note_id, c.digest) for c in ready), self.pack)
        todo = [c for c in ready if (c.note.note_id, c.digest) not in done]
        self.summary.skipped += len(ready) - len(todo)
        return todo

    def _keep(self, todo: list[Checked], outcomes: Sequence[CodedNote | Exception]) -> None:
        """Each note's result (or failure) into the store, as it comes."""
        for checked, outcome in zip(todo, outcomes, strict=True):
            row = checked.row
            if isinstance(outcome, CodedNote):
                self.store.save_result(
                    outcome, text=row.text, source=row.where, metadata=row.metadata
                )
                self.summary.coded += 1
            else:
                public = isinstance(outcome, PublicError)
                kind = "rejected" if public else f"internal error ({type(outcome).__name__})"
                self._fail(row, "pipeline", kind, describe_error(outcome) if public else kind)

    def coder(self) -> Coder:
        if self._coder is None:
            self._coder = self._make_coder()
        return self._coder

    def _fail(self, row: SourceRow, stage: str, kind: str, reason: str) -> None:
        record_failure(self.store, self.summary, row, stage, kind, reason)


def record_failure(
    store: Store, summary: Summary, row: SourceRow, stage: str, kind: str, reason: str
) -> None:
    """Count a failure and keep it in the store. A note the pipeline could not code is kept as
    a failed note version; a row refused at intake is kept with its id only (its text may be
    no text at all, or a second text for an id seen earlier)."""
    summary.failed[kind] += 1
    valid_id = row.note_id if row.note_id and _NOTE_ID_RE.match(row.note_id) else None
    store.save_failure(
        stage=stage,
        reason=f"{row.where}: {reason}",
        note_id=valid_id,
        text=row.text if stage == "pipeline" else None,
        source=row.where,
        metadata=row.metadata,
    )


Publish = Callable[[NoteIn], Awaitable[None]]


class BusBackfill:
    """The run over the bus: register, publish with bounded in-flight, wait for the store."""

    def __init__(
        self,
        store: Store,
        publish: Publish,
        *,
        max_chars: int,
        pack: str,
        max_in_flight: int = 64,
        poll_s: float = 0.5,
        progress: Progress | None = None,
    ) -> None:
        self.store = store
        self.publish = publish
        self.max_chars = max_chars
        self.pack = pack
        self.max_in_flight = max_in_flight
        self.poll_s = poll_s
        self.progress = progress
        self.summary = Summary()
        self._seen: dict[str, str] = {}
        self._in_flight: dict[int, Checked] = {}

    async def run(self, rows: Iterable[SourceRow], timeout_s: float = 24 * 3600) -> Summary:
        started = time.perf_counter()
        try:
            for row in rows:
                checked = check_row(row, self.max_chars, self._seen)
                if not isinstance(checked, Checked):
                    record_failure(self.store, self.summary, row, "intake", *checked)
                    self._tick()
                    continue
                if self.store.coded_versions([(checked.note.note_id, checked.digest)], self.pack):
                    self.summary.skipped += 1
                    self._tick()
                    continue
                version, _ = self.store.register(
                    checked.note.note_id, checked.note.text, source=row.where, metadata=row.metadata
                )
                self.store.set_status(version.pk, "queued")  # coded by another pack, maybe
                await self.publish(checked.note)
                self._in_flight[version.pk] = checked
                while len(self._in_flight) >= self.max_in_flight:
                    await self._collect()
            deadline = time.monotonic() + timeout_s
            while self._in_flight and time.monotonic() < deadline:
                await self._collect()
        finally:
            self.summary.seconds = time.perf_counter() - started
        if self._in_flight:
            self.summary.failed["no result in time"] += len(self._in_flight)
        return self.summary

    async def _collect(self) -> None:
        await asyncio.sleep(self.poll_s)
        statuses = self.store.statuses(list(self._in_flight))
        for pk, status in statuses.items():
            if status == "coded":
                self.summary.coded += 1
            elif status == "failed":
                self.summary.failed["failed in a stage"] += 1
            else:
                continue
            del self._in_flight[pk]
            self._tick()

    def _tick(self) -> None:
        if self.progress is not None:
            self.progress.update(1)
            self.progress.set_postfix_str(self.summary.postfix())
