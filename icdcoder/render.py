"""Rendering results for people: a plain-text table per note."""

from __future__ import annotations

import shutil
import textwrap

from icdcoder.shared.messages import CodedNote


def _clip(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: max(0, width - 1)] + "…"


def table(note: CodedNote) -> str:
    width = max(80, shutil.get_terminal_size((120, 24)).columns)
    lines = [f"{note.note_id}  ({note.catalogue_version}, verifier {note.verifier.backend})"]
    if not note.codes:
        lines.append("  no codes")
    header = f"  {'#':>2}  {'code':<9} {'conf':>5}  {'':<6}  description"
    lines += [header, "  " + "-" * (width - 4)]
    for rank, result in enumerate(note.codes, 1):
        mark = "" if result.decision == "accept" else "review"
        lines.append(
            f"  {rank:>2}  {result.code:<9} {result.confidence:>5.2f}  {mark:<6}  "
            + _clip(result.description, width - 36)
        )
        for ev in result.evidence:
            lines.append(f'{"":>14}evidence [{ev.start}:{ev.end}] "{_clip(ev.text, width - 40)}"')
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
