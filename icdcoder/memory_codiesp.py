"""An example memory from CodiEsp: each gold evidence aligned to a span of the English text.

CodiEsp-X gives, for each gold code, the Spanish evidence ("adenopatías") and its offsets in the
Spanish text; the English machine translation has no offsets, only one sentence per line. The
alignment:

1. the evidence's relative position in the Spanish text points at an English line;
2. the spans of the segmenter in the lines around it (``WINDOW`` either side) are the choices;
3. the span nearest in meaning to the code's catalogue texts, plus ``EVIDENCE_WEIGHT`` times its
   similarity to the Spanish evidence itself (cognates share subwords: "adenopatías" /
   "adenopathies"), minus ``LINE_PENALTY`` per line away, wins.

The result is distant supervision, not a gold alignment: it is what a coding team's confirmed
codes would give with their evidence, approximated. Only a training split may be used; the
split that results are reported on is refused by the command.
"""

from __future__ import annotations

import csv
from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from icdcoder.codiesp import CodiEspCase, CodiEspError, read_split
from icdcoder.shared.catalogue import Catalogue
from icdcoder.shared.memory import Example, MemoryNote
from icdcoder.shared.messages import Span
from icdcoder.training.learn import SpanSegmenter, TextEncoder, Vectors

WINDOW = 2
EVIDENCE_WEIGHT = 0.5
LINE_PENALTY = 0.05


@dataclass(frozen=True)
class GoldEvidence:
    """One CodiEsp-X diagnosis row: a code and where the Spanish text says it."""

    case_id: str
    code: str
    text: str
    start: int


def read_x(path: Path) -> list[GoldEvidence]:
    """The diagnosis rows of a CodiEsp-X file (``id, type, code, evidence, offsets``)."""
    if not path.is_file():
        raise CodiEspError(f"CodiEsp-X file not found: {path}")
    rows: list[GoldEvidence] = []
    with path.open(encoding="utf-8", newline="") as handle:
        for number, fields in enumerate(csv.reader(handle, delimiter="\t"), start=1):
            if len(fields) != 5:
                raise CodiEspError(f"{path}:{number}: expected 5 tab-separated fields")
            case_id, kind, code, text, offsets = fields
            if kind != "DIAGNOSTICO":
                continue
            try:
                start = int(offsets.split(";")[0].split()[0])
            except (IndexError, ValueError):
                raise CodiEspError(f"{path}:{number}: bad offsets {offsets!r}") from None
            rows.append(GoldEvidence(case_id, code, text, start))
    return rows


def line_starts(text: str) -> list[int]:
    starts = [0]
    starts.extend(i + 1 for i, ch in enumerate(text) if ch == "\n" and i + 1 < len(text))
    return starts


def align(
    evidence: GoldEvidence,
    *,
    source_length: int,
    target_starts: Sequence[int],
    target_length: int,
    spans: Sequence[Span],
    span_vectors: Vectors,
    code_vectors: Vectors,
    evidence_vector: Vectors,
) -> int | None:
    """Index of the span that best carries ``evidence`` in the translation, or None."""
    if not spans or code_vectors.shape[0] == 0:
        return None
    position = evidence.start / max(source_length, 1) * target_length
    line = bisect_right(target_starts, position) - 1
    best: tuple[float, int] | None = None
    for i, span in enumerate(spans):
        distance = abs(bisect_right(target_starts, span.start) - 1 - line)
        if distance > WINDOW:
            continue
        meaning = float((code_vectors @ span_vectors[i]).max())
        cognate = float(evidence_vector @ span_vectors[i])
        value = meaning + EVIDENCE_WEIGHT * cognate - LINE_PENALTY * distance
        if best is None or value > best[0]:
            best = (value, i)
    return None if best is None else best[1]


@dataclass
class MemoryStats:
    cases: int = 0
    evidences: int = 0
    aligned: int = 0
    not_in_catalogue: int = 0
    no_span: int = 0
    examples: int = 0


def build_examples(
    data: Path,
    split: str,
    *,
    catalogue: Catalogue,
    segmenter: SpanSegmenter,
    encoder: TextEncoder,
    progress: Callable[[Iterable[CodiEspCase]], Iterable[CodiEspCase]] = lambda it: it,
) -> tuple[list[Example], MemoryStats]:
    """Confirmed examples of ``split``: one per distinct (case, span, code) alignment."""
    english = {case.case_id: case for case in read_split(data, split, lang="en")}
    spanish = {case.case_id: case.text for case in read_split(data, split, lang="es")}
    by_case: dict[str, list[GoldEvidence]] = {}
    for row in read_x(data / split / f"{split}X.tsv"):
        by_case.setdefault(row.case_id, []).append(row)
    texts: dict[str, list[str]] = {}
    for row in (r for rows in by_case.values() for r in rows):
        info = catalogue.get(row.code)
        if info is not None and info.code not in texts:
            texts[info.code] = [t.text for t in catalogue.texts_of(info.code)]
    flat_vectors = encoder.encode([text for items in texts.values() for text in items])
    code_vectors: dict[str, Vectors] = {}
    offset = 0
    for code, items in texts.items():
        code_vectors[code] = flat_vectors[offset : offset + len(items)]
        offset += len(items)
    stats = MemoryStats()
    examples: dict[tuple[str, int, str], Example] = {}
    for case in progress([english[c] for c in sorted(by_case) if c in english]):
        stats.cases += 1
        spans = segmenter.segment(case.note()).spans
        span_vectors = encoder.encode([s.text for s in spans]) if spans else None
        evidence_vectors = encoder.encode([r.text for r in by_case[case.case_id]])
        starts = line_starts(case.text)
        for row, evidence_vector in zip(by_case[case.case_id], evidence_vectors, strict=True):
            stats.evidences += 1
            info = catalogue.get(row.code)
            if info is None:
                stats.not_in_catalogue += 1
                continue
            chosen = None
            if span_vectors is not None:
                chosen = align(
                    row,
                    source_length=len(spanish.get(case.case_id, case.text)),
                    target_starts=starts,
                    target_length=len(case.text),
                    spans=spans,
                    span_vectors=span_vectors,
                    code_vectors=code_vectors[info.code],
                    evidence_vector=evidence_vector,
                )
            if chosen is None:
                stats.no_span += 1
                continue
            stats.aligned += 1
            key = (case.case_id, chosen, info.code)
            examples.setdefault(
                key,
                Example(
                    code=info.code,
                    text=spans[chosen].text,
                    source=f"codiesp-{split}:{case.case_id}",
                ),
            )
    stats.examples = len(examples)
    return list(examples.values()), stats


def coded_notes(data: Path, split: str, *, catalogue: Catalogue) -> list[MemoryNote]:
    """Each case of ``split`` as a coded note: its English text and its gold codes that the
    catalogue has (the similar-notes vote). Cases with no such code are left out."""
    notes: list[MemoryNote] = []
    for case in read_split(data, split, lang="en"):
        infos = [catalogue.get(code) for code in case.gold]
        codes = tuple(dict.fromkeys(info.code for info in infos if info is not None))
        if codes:
            notes.append(
                MemoryNote(codes=codes, text=case.text, source=f"codiesp-{split}:{case.case_id}")
            )
    return notes
