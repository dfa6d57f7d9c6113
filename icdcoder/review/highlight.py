"""A note cut into segments for the review page: each piece of text with the codes whose
evidence covers it and the reasons of the excluded spans over it (overlaps allowed)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise


@dataclass(frozen=True)
class Mark:
    """A span to show: evidence of code number ``code`` (its row on the page), or an excluded
    span (``code`` None) with the reason the system did not code it."""

    start: int
    end: int
    code: int | None = None
    reason: str = ""
    excluded_code: str = ""


@dataclass(frozen=True)
class Segment:
    start: int
    end: int
    text: str
    codes: tuple[int, ...] = ()
    reasons: tuple[str, ...] = ()

    @property
    def plain(self) -> bool:
        return not self.codes and not self.reasons


def segments(text: str, marks: Sequence[Mark]) -> list[Segment]:
    """``text`` cut at every mark's edges (offsets clipped to the text; empty marks ignored);
    the pieces cover the text exactly, in order."""
    size = len(text)
    clipped = [
        Mark(max(0, m.start), min(size, m.end), m.code, m.reason, m.excluded_code)
        for m in marks
        if max(0, m.start) < min(size, m.end)
    ]
    edges = sorted({0, size, *(m.start for m in clipped), *(m.end for m in clipped)})
    out: list[Segment] = []
    for start, end in pairwise(edges):
        covering = [m for m in clipped if m.start <= start and end <= m.end]
        codes = tuple(sorted({m.code for m in covering if m.code is not None}))
        reasons = tuple(
            dict.fromkeys(
                f"{m.excluded_code}: {m.reason}" if m.excluded_code else m.reason
                for m in covering
                if m.code is None
            )
        )
        out.append(Segment(start, end, text[start:end], codes, reasons))
    return out
