"""Rendering results for people: a plain-text table per note.

A coder is shown the accepted codes and the few best review suggestions
(``ICDCODER_AGGREGATOR__SHOWN_REVIEW``); the result itself keeps the full ranked list, which
the JSON output, the API, exports and MAP use.
"""

from __future__ import annotations

import shutil
import textwrap

from icdcoder.shared.messages import CodedNote, CodeResult


def _clip(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: max(0, width - 1)] + "…"


def shown_codes(note: CodedNote, review: int | None = None) -> list[tuple[int, CodeResult]]:
    """(rank, code) of what a coder is shown: every accepted code and the ``review`` most
    confident review suggestions (None: all), in rank order."""
    shown: list[tuple[int, CodeResult]] = []
    suggestions = 0
    for rank, result in enumerate(note.codes, 1):
        if result.decision != "accept":
            if review is not None and suggestions >= review:
                continue
            suggestions += 1
        shown.append((rank, result))
    return shown


def table(note: CodedNote, review: int | None = None) -> str:
    """The note's codes as a table: accepted codes and ``review`` review suggestions (None:
    all of them), each with its evidence, then the excluded spans."""
    width = max(80, shutil.get_terminal_size((120, 24)).columns)
    lines = [f"{note.note_id}  ({note.catalogue_version}, verifier {note.verifier.backend})"]
    if not note.codes:
        lines.append("  no codes")
    header = f"  {'#':>2}  {'code':<9} {'conf':>5}  {'':<6}  description"
    lines += [header, "  " + "-" * (width - 4)]
    shown = shown_codes(note, review)
    for rank, result in shown:
        mark = "" if result.decision == "accept" else "review"
        lines.append(
            f"  {rank:>2}  {result.code:<9} {result.confidence:>5.2f}  {mark:<6}  "
            + _clip(result.description, width - 36)
        )
        for ev in result.evidence:
            lines.append(f'{"":>14}evidence [{ev.start}:{ev.end}] "{_clip(ev.text, width - 40)}"')
    hidden = len(note.codes) - len(shown)
    if hidden:
        lines.append(
            f"  ... {hidden} more review suggestion{'s' if hidden > 1 else ''}"
            " (--show-review N, or --format json for all)"
        )
    if note.excluded:
        lines += ["", "  excluded:"]
        for ex in note.excluded:
            lines.append(
                f'    {ex.code:<9} [{ex.start}:{ex.end}] "{_clip(ex.text, 40)}": {ex.reason}'
            )
    return "\n".join(
        textwrap.shorten(line, width, placeholder="…") if len(line) > width else line
        for line in lines
    )
