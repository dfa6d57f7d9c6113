"""What a stage is to the bus: its spec (which core, which models, what to count) and its
loaded core, and the rule that a message is processed only with the pack that made it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from pydantic import BaseModel

from icdcoder.shared.logging import PublicError
from icdcoder.shared.settings import Settings
from icdcoder.shared.streams import Stage

InT = TypeVar("InT", bound=BaseModel)
OutT = TypeVar("OutT", bound=BaseModel)
Process = Callable[[InT], Awaitable[OutT]]


class PackMismatch(PublicError, RuntimeError):
    """The message was made with another model pack than this worker's (a rollout in progress:
    retried, then dead-lettered with this reason)."""


@dataclass(frozen=True)
class LoadedStage(Generic[InT, OutT]):
    """A stage's core, ready: its call, and the id of the pack it was built from (None for a
    stage that reads no pack)."""

    process: Process[InT, OutT]
    pack: str | None = None


@dataclass(frozen=True)
class StageSpec(Generic[InT, OutT]):
    """What differs between the stages: the core, its models, what to count in the log line."""

    stage: Stage
    input_model: type[InT]
    output_model: type[OutT]
    #: Builds the core (called once, in a thread, at startup).
    load: Callable[[Settings], LoadedStage[InT, OutT]]
    #: Counts for the canonical log line (spans, candidates, codes...): never text.
    counts: Callable[[OutT], Mapping[str, int]]
    #: Whether input messages carry a pack id that must match this worker's pack.
    checks_pack: bool = False


def check_pack(note: BaseModel, expected: str | None, stage: str) -> None:
    """Raise :class:`PackMismatch` when ``note`` was made with another pack than ``expected``
    (None: the stage reads no pack)."""
    if expected is None:
        return
    got = getattr(note, "pack", "")
    if got != expected:
        raise PackMismatch(
            f"the message was made with pack {got or '(none)'}, this {stage} "
            f"has pack {expected}: run every stage with the same ICDCODER_PACK"
        )
