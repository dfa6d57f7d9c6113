"""What the chaos suite runs: its own Redis server, real worker processes, a log scanner.

Nothing here touches the Redis the other tests use: each scenario starts ``redis-server`` on a
free port in a temporary folder (with or without an append-only file, always with a password)
and can shut it down, kill it and start it again on the same port and folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import redis as sync_redis

from icdcoder.shared.bus.wire import encode_entry, entry_bytes, unpack_payload
from icdcoder.shared.messages import CodedNote, DeadLetter, NoteIn
from icdcoder.shared.streams import CODES, DEAD_LETTER, NOTES, STAGES

REPO = Path(__file__).resolve().parents[2]
NOTES_DIR = REPO.parent / "shared/data/codiesp/dev/text_files_en"
WORKER = [sys.executable, "-m", "icdcoder", "worker"]
#: Fast reclaiming, so a scenario's dead worker's note is picked up within seconds.
FAST = {"ICDCODER_BUS__CLAIM_IDLE_MS": "2000", "ICDCODER_BUS__CLAIM_INTERVAL_S": "0.25"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RedisServer:
    """``redis-server`` of our own: ``persistent`` keeps an fsync-always append-only file."""

    folder: Path
    password: str
    persistent: bool = True
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--dir", str(self.folder), "--requirepass", self.password, "--save", ""]
        args += (
            ["--appendonly", "yes", "--appendfsync", "always"]
            if self.persistent
            else [
                "--appendonly",
                "no",
            ]
        )
        log = (self.folder / "redis.log").open("ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        wait(lambda: self._pings(), "redis to answer", timeout_s=20)

    def _pings(self) -> bool:
        try:
            return bool(self.client().ping())
        except (sync_redis.RedisError, OSError):
            return False

    def client(self, password: str | None = None) -> sync_redis.Redis:
        return sync_redis.Redis(
            host="127.0.0.1", port=self.port, password=password or self.password
        )

    def stop(self) -> None:
        """A clean shutdown (the append-only file is complete, as after a planned restart)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(sync_redis.RedisError, OSError):
            self.client().shutdown(nosave=not self.persistent)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def restart(self) -> None:
        self.stop()
        self.start()


@dataclass
class Workers:
    """``icdcoder worker`` processes, each logging to its own file under ``logs``."""

    logs: Path
    env: dict[str, str]
    procs: list[tuple[str, subprocess.Popen[bytes], Path]] = field(default_factory=list)

    def start(self, stage: str, **extra: str) -> subprocess.Popen[bytes]:
        n = sum(1 for s, _, _ in self.procs if s == stage)
        path = self.logs / f"{stage}-{n}.log"
        with path.open("wb") as log:
            proc = subprocess.Popen(
                [*WORKER, stage, "--http-port", "0"],
                cwd=REPO,
                env={
                    **os.environ,
                    "PYTHONPATH": str(REPO),
                    "ICDCODER_BUS__CONSUMER_NAME": f"{stage}-{n}",
                    **self.env,
                    **extra,
                },
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.procs.append((stage, proc, path))
        return proc

    def start_all(self, **extra: str) -> None:
        for stage in STAGES:
            self.start(stage, **extra)

    def live(self, stage: str) -> subprocess.Popen[bytes]:
        return next(p for s, p, _ in reversed(self.procs) if s == stage and p.poll() is None)

    def ready(self, stage: str) -> bool:
        """Whether the newest live worker of ``stage`` has loaded its core."""
        proc = self.live(stage)
        path = next(path for _, p, path in self.procs if p is proc)
        return "core_loaded" in path.read_text(errors="replace")

    def stop_all(self, timeout_s: float = 90) -> None:
        live = [p for _, p, _ in self.procs if p.poll() is None]
        for proc in live:
            proc.send_signal(signal.SIGTERM)
        for proc in live:
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)

    def output(self) -> str:
        return "\n".join(path.read_text(errors="replace") for _, _, path in self.procs)


def wait(
    check: Callable[[], bool], what: str, timeout_s: float = 300, every_s: float = 0.1
) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every_s)


def dev_notes(prefix: str, n: int, start: int = 0) -> list[NoteIn]:
    paths = sorted(NOTES_DIR.glob("*.txt"))[start : start + n]
    return [NoteIn(note_id=f"{prefix}{p.stem}", text=p.read_text("utf-8")) for p in paths]


def submit(db: sync_redis.Redis, notes: Iterable[NoteIn]) -> None:
    for note in notes:
        db.xadd(NOTES, encode_entry(note))


def coded_ids(db: sync_redis.Redis, prefix: str = "") -> Counter[str]:
    found = cast("list[tuple[bytes, dict[bytes, bytes]]]", db.xrange(CODES))
    ids = (CodedNote.model_validate_json(entry_bytes(f)).note_id for _, f in found)
    return Counter(i for i in ids if i.startswith(prefix))


def letters(db: sync_redis.Redis) -> list[DeadLetter]:
    found = cast("list[tuple[bytes, dict[bytes, bytes]]]", db.xrange(DEAD_LETTER))
    return [DeadLetter.model_validate_json(unpack_payload(entry_bytes(f))) for _, f in found]


def pending(db: sync_redis.Redis) -> int:
    total = 0
    for stage in STAGES.values():
        with contextlib.suppress(sync_redis.ResponseError):
            total += int(db.xpending(stage.source, stage.group)["pending"])
    return total


def in_hand(db: sync_redis.Redis, stage: str) -> bool:
    try:
        return int(db.xpending(STAGES[stage].source, STAGES[stage].group)["pending"]) > 0
    except sync_redis.ResponseError:
        return False


_WORD = re.compile(r"[A-Za-z0-9]+")


def five_grams(text: str) -> set[tuple[str, ...]]:
    words = [w.lower() for w in _WORD.findall(text)]
    return {tuple(words[i : i + 5]) for i in range(len(words) - 4)}


def leaked_fragments(log: str, notes: Iterable[NoteIn]) -> list[str]:
    """Every 5-word sequence of the notes found in ``log`` (tokenised the same way)."""
    grams: set[tuple[str, ...]] = set()
    for note in notes:
        grams |= five_grams(note.text)
    return sorted({" ".join(g) for g in five_grams(log) if g in grams})


@dataclass
class Row:
    """One line of the closing table: what happened to the notes of a scenario."""

    scenario: str
    sent: int
    coded_once: int
    lost: int
    duplicated: int
    dead_lettered: int
    note: str = ""

    @classmethod
    def of(
        cls,
        scenario: str,
        notes: list[NoteIn],
        coded: Counter[str],
        dead: Iterable[str],
        note: str = "",
    ) -> Row:
        ids = [n.note_id for n in notes]
        dead_ids = set(dead)
        return cls(
            scenario=scenario,
            sent=len(ids),
            coded_once=sum(1 for i in ids if coded[i] == 1),
            lost=sum(1 for i in ids if coded[i] == 0 and i not in dead_ids),
            duplicated=sum(1 for i in ids if coded[i] > 1),
            dead_lettered=sum(1 for i in ids if i in dead_ids),
            note=note,
        )

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def write_report(rows: list[Row], extra: dict[str, Any], path: Path) -> None:
    lines = [
        "| scenario | sent | coded once | lost | duplicated | dead-lettered | note |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r.scenario} | {r.sent} | {r.coded_once} | {r.lost} | {r.duplicated} "
            f"| {r.dead_lettered} | {r.note} |"
        )
    lines += ["", "```", json.dumps(extra, indent=2), "```"]
    path.write_text("\n".join(lines) + "\n")
