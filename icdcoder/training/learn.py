"""Learning from a coded archive: document-level codes aligned to spans (weak supervision).

An archive of coded notes usually says which codes a note got, not where the note says them.
``icdcoder learn`` turns such an archive into an example memory the way ``icdcoder memory
codiesp`` does from CodiEsp-X's evidence, without the evidence:

1. each note is segmented into spans and each span embedded (the retriever's query vectors);
2. each of the note's codes is embedded through its catalogue texts (description, inclusion
   terms and, in an enriched catalogue, the Alphabetic Index paths);
3. the span nearest in meaning to any of the code's texts is the code's example; a second span
   is kept when it is within ``second_margin`` of the best, and no span at all when the best is
   below ``floor`` (a code the note does not say in words the catalogue's texts are near);
4. with ``rounds=2`` the alignment is done again, each code's texts joined by the spans other
   notes' first-round alignments gave it (the note's own left out): an archive's conventions
   ("adenopathy" coded R59.9) then pull in spans no catalogue text is near.

Each note is also a coded note (its catalogue codes), the similar-notes vote. This module is
pure: notes, codes, spans and vectors in, examples and counts out; the command reads the files,
runs the segmenter and the encoder, and writes the pack. The result is distant supervision,
not a gold alignment, and note texts never leave it except as the examples' span texts.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from icdcoder.shared.catalogue import Catalogue
from icdcoder.shared.logging import PublicError
from icdcoder.shared.memory import Example, MemoryNote
from icdcoder.shared.messages import NoteIn, SegmentedNote
from icdcoder.training.corpus import CodedCase

Vectors = npt.NDArray[np.float32]


class LearnError(PublicError):
    """An archive that cannot be learnt from (one line, naming the file and line)."""


class TextEncoder(Protocol):
    def encode(self, texts: Sequence[str]) -> Vectors: ...


class SpanSegmenter(Protocol):
    def segment(self, note: NoteIn) -> SegmentedNote: ...


@dataclass(frozen=True)
class AlignOptions:
    #: A code whose best span is less similar than this to its texts gets no example.
    floor: float = 0.35
    #: A second span is kept when its similarity is within this of the best one's.
    second_margin: float = 0.05
    #: At most this many spans per (note, code).
    max_spans: int = 2
    #: 2: align again with other notes' first-round examples as extra texts of each code.
    rounds: int = 2


@dataclass
class LearnStats:
    notes: int = 0
    #: (note, code) pairs read, distinct.
    codes: int = 0
    #: (note, code) pairs whose code is not in the catalogue (dropped).
    not_in_catalogue: int = 0
    #: (note, code) pairs aligned to at least one span.
    aligned: int = 0
    #: (note, code) pairs whose best span is below the floor.
    below_floor: int = 0
    #: (note, code) pairs of notes without a span.
    no_span: int = 0
    examples: int = 0
    coded_notes: int = 0
    #: A few of the codes dropped, for the summary.
    dropped_codes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class LearnResult:
    examples: tuple[Example, ...]
    notes: tuple[MemoryNote, ...]
    stats: LearnStats


@dataclass(frozen=True)
class NoteSpans:
    """One note's span texts and their vectors (one row per span, unit length)."""

    texts: tuple[str, ...]
    vectors: Vectors


def read_codes(path: Path) -> dict[str, list[str]]:
    """``id<TAB>code`` lines (CodiEsp's ``trainD.tsv``): each id's codes as written, in file
    order, repeats removed. Blank lines are skipped; any other line must have two fields."""
    if not path.is_file():
        raise LearnError(f"codes file not found: {path}")
    codes: dict[str, list[str]] = {}
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            for number, fields in enumerate(csv.reader(handle, delimiter="\t"), start=1):
                if not fields or all(not f.strip() for f in fields):
                    continue
                if len(fields) != 2 or not fields[0].strip() or not fields[1].strip():
                    raise LearnError(f"{path}:{number}: expected 'id<TAB>code'")
                note_id, code = fields[0].strip(), fields[1].strip()
                seen = codes.setdefault(note_id, [])
                if code not in seen:
                    seen.append(code)
    except UnicodeDecodeError:
        raise LearnError(f"{path}: not UTF-8 text") from None
    if not codes:
        raise LearnError(f"{path}: no codes")
    return codes


def coded_cases(
    notes: Iterable[tuple[str, str]],
    codes: Mapping[str, Sequence[str]],
    catalogue: Catalogue,
    stats: LearnStats,
) -> list[CodedCase]:
    """The notes that have codes, each with its codes in catalogue form, sorted by id.

    Codes the catalogue does not have are counted and dropped; a note whose codes are all
    dropped is left out; a note without codes is left out. An id of the codes file with no
    note is an error (the two files do not belong together)."""
    texts: dict[str, str] = {}
    for note_id, text in notes:
        if note_id in texts:
            raise LearnError(f"note id {note_id!r} appears twice in the notes")
        texts[note_id] = text
    check_ids(texts, codes)
    cases: list[CodedCase] = []
    for note_id in sorted(codes):
        kept: list[str] = []
        for raw in codes[note_id]:
            stats.codes += 1
            info = catalogue.get(raw)
            if info is None:
                stats.not_in_catalogue += 1
                if len(stats.dropped_codes) < 5 and raw not in stats.dropped_codes:
                    stats.dropped_codes.append(raw)
            elif info.code not in kept:
                kept.append(info.code)
        if kept and texts[note_id].strip():
            cases.append(CodedCase(note_id, texts[note_id], tuple(kept)))
    stats.notes = len(cases)
    return cases


def check_ids(note_ids: Iterable[str], codes: Mapping[str, Sequence[str]]) -> None:
    """:class:`LearnError` when an id of the codes file has no note."""
    missing = sorted(set(codes) - set(note_ids))
    if missing:
        shown = ", ".join(repr(m) for m in missing[:3])
        raise LearnError(
            f"{len(missing):,} id(s) of the codes file have no note (e.g. {shown}): "
            "the note ids are the file names' stems or the source's id column"
        )


def best_spans(similarities: npt.NDArray[np.float32], options: AlignOptions) -> list[int]:
    """The spans a code is aligned to, best first: the best one when it reaches the floor, and
    up to ``max_spans - 1`` more within ``second_margin`` of it."""
    if similarities.size == 0:
        return []
    order = np.argsort(-similarities, kind="stable")
    best = float(similarities[order[0]])
    if best < options.floor:
        return []
    chosen = [int(order[0])]
    for i in order[1:]:
        if len(chosen) >= options.max_spans:
            break
        if float(similarities[i]) < max(best - options.second_margin, options.floor):
            break
        chosen.append(int(i))
    return chosen


def code_vectors(
    codes: Iterable[str], catalogue: Catalogue, encoder: TextEncoder
) -> dict[str, Vectors]:
    """Each code's catalogue texts embedded (one row per text)."""
    texts = {code: [t.text for t in catalogue.texts_of(code)] for code in dict.fromkeys(codes)}
    flat = [text for items in texts.values() for text in items]
    vectors = encoder.encode(flat) if flat else np.zeros((0, 0), np.float32)
    out: dict[str, Vectors] = {}
    offset = 0
    for code, items in texts.items():
        out[code] = vectors[offset : offset + len(items)]
        offset += len(items)
    return out


def _similarities(spans: NoteSpans, vectors: Vectors) -> npt.NDArray[np.float32]:
    if vectors.shape[0] == 0:
        return np.full(len(spans.texts), -np.inf, np.float32)
    return np.asarray((spans.vectors @ vectors.T).max(axis=1), dtype=np.float32)


def align_cases(
    cases: Sequence[CodedCase],
    spans: Mapping[str, NoteSpans],
    codes: Mapping[str, Vectors],
    *,
    source: str,
    options: AlignOptions = AlignOptions(),
    stats: LearnStats | None = None,
) -> LearnResult:
    """Examples (one per distinct note, span text and code) and coded notes of ``cases``.

    ``spans`` holds each case's span texts and vectors, ``codes`` each catalogue code's text
    vectors; an example's and a coded note's source is ``<source>:<case id>`` (so that a fit
    can leave a case's own examples out)."""
    stats = stats if stats is not None else LearnStats()
    rounds: list[dict[tuple[str, str], list[int]]] = []
    for round_number in range(max(options.rounds, 1)):
        extra = _round_examples(cases, spans, rounds[-1]) if round_number else {}
        chosen: dict[tuple[str, str], list[int]] = {}
        for case in cases:
            note = spans.get(case.case_id)
            for code in case.codes:
                if note is None or not note.texts:
                    continue
                values = _similarities(note, codes.get(code, np.zeros((0, 0), np.float32)))
                others = extra.get(code)
                if others is not None:
                    owners, vectors = others
                    mask = owners != case.case_id
                    if mask.any():
                        values = np.maximum(values, _similarities(note, vectors[mask]))
                chosen[(case.case_id, code)] = best_spans(values, options)
        rounds.append(chosen)
    final = rounds[-1]
    examples: dict[tuple[str, str, str], Example] = {}
    notes: list[MemoryNote] = []
    for case in cases:
        note = spans.get(case.case_id)
        for code in case.codes:
            if note is None or not note.texts:
                stats.no_span += 1
                continue
            picked = final.get((case.case_id, code), [])
            if not picked:
                stats.below_floor += 1
                continue
            stats.aligned += 1
            for index in picked:
                text = note.texts[index]
                examples.setdefault(
                    (case.case_id, text, code),
                    Example(code=code, text=text, source=f"{source}:{case.case_id}"),
                )
        notes.append(
            MemoryNote(codes=case.codes, text=case.text, source=f"{source}:{case.case_id}")
        )
    stats.examples, stats.coded_notes = len(examples), len(notes)
    return LearnResult(tuple(examples.values()), tuple(notes), stats)


def _round_examples(
    cases: Sequence[CodedCase],
    spans: Mapping[str, NoteSpans],
    chosen: Mapping[tuple[str, str], list[int]],
) -> dict[str, tuple[npt.NDArray[np.str_], Vectors]]:
    """Per code, the span vectors a round aligned to it and the case each came from."""
    owners: dict[str, list[str]] = {}
    rows: dict[str, list[Vectors]] = {}
    for case in cases:
        note = spans.get(case.case_id)
        if note is None:
            continue
        for code in case.codes:
            for index in chosen.get((case.case_id, code), []):
                owners.setdefault(code, []).append(case.case_id)
                rows.setdefault(code, []).append(note.vectors[index])
    return {code: (np.array(owners[code]), np.stack(rows[code])) for code in rows}


def segment_and_embed(
    cases: Sequence[CodedCase],
    segmenter: SpanSegmenter,
    encoder: TextEncoder,
    progress: Callable[[Sequence[CodedCase]], Iterable[CodedCase]] = lambda it: it,
) -> dict[str, NoteSpans]:
    """Each case's spans and their vectors, from a segmenter and an encoder."""
    out: dict[str, NoteSpans] = {}
    for case in progress(cases):
        texts = tuple(span.text for span in segmenter.segment(case.note()).spans)
        vectors = encoder.encode(list(texts)) if texts else np.zeros((0, 0), np.float32)
        out[case.case_id] = NoteSpans(texts, vectors)
    return out


def learn(
    cases: Sequence[CodedCase],
    *,
    catalogue: Catalogue,
    segmenter: SpanSegmenter,
    encoder: TextEncoder,
    source: str,
    options: AlignOptions = AlignOptions(),
    stats: LearnStats | None = None,
) -> LearnResult:
    """:func:`align_cases` with spans from ``segmenter`` and vectors from ``encoder`` (the
    same encoder for spans and catalogue texts)."""
    spans = segment_and_embed(cases, segmenter, encoder)
    vectors = code_vectors((c for case in cases for c in case.codes), catalogue, encoder)
    return align_cases(cases, spans, vectors, source=source, options=options, stats=stats)
