"""The CodiEsp corpus on disk: reading a split's cases and CodiEsp-D gold, writing run files.

A split directory (``<data>/<split>/``) holds ``text_files/<id>.txt`` (Spanish),
``text_files_en/<id>.txt`` (English machine translation) and ``<split>D.tsv`` with one
``id<TAB>code`` line per gold diagnosis code (lower case, unordered, about 11 per case).
Problems are raised as :class:`CodiEspError` with a one-line message fit for the terminal.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from icdcoder.metrics import gold_form, unique
from icdcoder.shared.codes import InvalidCodeError
from icdcoder.shared.messages import NOTE_ID_PATTERN, NoteIn

Language = Literal["en", "es"]

#: The folder of case texts for each language.
TEXT_DIRS: dict[Language, str] = {"en": "text_files_en", "es": "text_files"}

_NOTE_ID = re.compile(NOTE_ID_PATTERN)


class CodiEspError(ValueError):
    """Data that cannot be read as a CodiEsp split; the message is one line."""


@dataclass(frozen=True)
class CodiEspCase:
    """One clinical case: its text in the chosen language and its distinct gold codes."""

    case_id: str
    text: str
    gold: tuple[str, ...]

    def note(self) -> NoteIn:
        return NoteIn(note_id=self.case_id, text=self.text)


def gold_path(data: Path, split: str) -> Path:
    """Where the CodiEsp-D gold standard of a split lives: ``<data>/<split>/<split>D.tsv``."""
    return data / split / f"{split}D.tsv"


def parse_gold(lines: Iterable[str], *, source: str = "gold") -> dict[str, tuple[str, ...]]:
    """``id<TAB>code`` lines -> case id -> distinct codes in gold form, in file order.

    Blank lines are skipped; anything else malformed raises :class:`CodiEspError`.
    """
    gold: dict[str, list[str]] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        fields = line.rstrip("\r\n").split("\t")
        if len(fields) != 2 or not fields[0].strip():
            raise CodiEspError(f"{source}:{number}: expected 'id<TAB>code', got {line.strip()!r}")
        case_id, raw = fields[0].strip(), fields[1]
        try:
            code = gold_form(raw)
        except InvalidCodeError:
            raise CodiEspError(f"{source}:{number}: not an ICD-10-CM code: {raw!r}") from None
        gold.setdefault(case_id, []).append(code)
    return {case_id: tuple(unique(codes)) for case_id, codes in gold.items()}


def read_gold(path: Path) -> dict[str, tuple[str, ...]]:
    """Read a ``<split>D.tsv`` gold file (see :func:`parse_gold`)."""
    if not path.is_file():
        raise CodiEspError(f"gold standard not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CodiEspError(f"cannot read {path}: {exc}") from None
    return parse_gold(text.splitlines(), source=str(path))


def _text_dir(data: Path, split: str, lang: Language) -> Path:
    if not data.is_dir():
        raise CodiEspError(f"CodiEsp data folder not found: {data}")
    split_dir = data / split
    if not split_dir.is_dir():
        found = sorted(p.name for p in data.iterdir() if p.is_dir()) or ["none"]
        raise CodiEspError(
            f"split {split!r} not found in {data} (splits there: {', '.join(found)})"
        )
    text_dir = split_dir / TEXT_DIRS[lang]
    if not text_dir.is_dir():
        raise CodiEspError(f"no {lang!r} texts for split {split!r}: {text_dir} not found")
    return text_dir


def _read_text(path: Path) -> str:
    if not _NOTE_ID.match(path.stem):
        raise CodiEspError(f"{path}: the file name is not a usable case id")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise CodiEspError(f"{path}: not UTF-8 text (bad byte at offset {exc.start})") from None
    except OSError as exc:
        raise CodiEspError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not text.strip():
        raise CodiEspError(f"{path}: the case text is empty")
    return text


def read_split(
    data: Path, split: str, *, lang: Language = "en", limit: int | None = None
) -> list[CodiEspCase]:
    """The cases of ``<data>/<split>``, sorted by case id; the first ``limit`` if given.

    Every gold case must have a text file; a text without gold lines gets empty gold.
    """
    if limit is not None and limit < 1:
        raise CodiEspError(f"limit must be at least 1, got {limit}")
    text_dir = _text_dir(data, split, lang)
    gold = read_gold(gold_path(data, split))
    files = sorted(text_dir.glob("*.txt"))
    if not files:
        raise CodiEspError(f"no .txt case files in {text_dir}")
    orphans = sorted(set(gold) - {path.stem for path in files})
    if orphans:
        raise CodiEspError(
            f"{len(orphans)} gold case(s) have no text in {text_dir}, e.g. {orphans[0]}"
        )
    chosen = files if limit is None else files[:limit]
    return [CodiEspCase(p.stem, _read_text(p), gold.get(p.stem, ())) for p in chosen]


def format_predictions(ranked: Mapping[str, Sequence[str]]) -> str:
    """A CodiEsp-D run file: ``id<TAB>code`` lines, each case's codes in rank order (gold
    form, each once); cases in mapping order."""
    return "".join(
        f"{case_id}\t{code}\n"
        for case_id, codes in ranked.items()
        for code in unique(gold_form(code) for code in codes)
    )
