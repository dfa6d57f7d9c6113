"""Segmenter core: a note -> sections, sentences and candidate spans with context flags.

The stages, each deciding one thing:

- ``sections.py``: which lines are headers and the section each sentence is in; which
  sections yield no spans (medications, administrative) and what a section implies (family
  history: family; differential diagnosis: hypothetical).
- ``sentences.py``: where sentences start and end (punctuation, blank lines, list items,
  headers; not a line wrapped inside a paragraph).
- ``context_rules.py``, ``context.py``: medspaCy's ConText over the whole note, our sentences
  as its scope: the cues, and each span's negated / hypothetical / family / historical flags.
- ``spans.py``: the clauses and list items of a sentence, ConText cues cut out, trimmed;
  ``text[start:end] == span.text`` always.

A note is checked once, by :func:`icdcoder.shared.notes.check_note_text` (empty, too long).
Patient text never leaves these modules except in the returned model: nothing here logs.
"""

from __future__ import annotations

import time

from icdcoder.services.segmenter.context import ConText, states_an_absence
from icdcoder.services.segmenter.sections import SKIPPED_SECTIONS, with_section
from icdcoder.services.segmenter.sentences import SentenceSplitter, split_sentences
from icdcoder.services.segmenter.spans import cut_cues, split_clauses
from icdcoder.shared.messages import NoteIn, SegmentedNote, Span
from icdcoder.shared.notes import check_note_text
from icdcoder.shared.settings import SegmenterConfig


class Segmenter:
    """Built once per process (loads the ConText rules); ``segment`` is then pure.

    ``sentence_splitter`` decides sections and sentences; the default is ours
    (:func:`~icdcoder.services.segmenter.sentences.split_sentences`). Only
    ``bench/segmenter_variants.py`` passes another (``variants.py``) to compare.
    """

    def __init__(
        self,
        config: SegmenterConfig | None = None,
        *,
        sentence_splitter: SentenceSplitter = split_sentences,
    ) -> None:
        self._max_chars = (config or SegmenterConfig()).max_note_chars
        self._split_sentences = sentence_splitter
        self._context = ConText()

    def segment(self, note: NoteIn) -> SegmentedNote:
        started = time.perf_counter()
        text = note.text
        check_note_text(text, self._max_chars)
        sentences = list(self._split_sentences(text))
        cues = self._context.cues(text, sentences)
        pieces = [
            (sentence, start, end)
            for sentence in sentences
            if sentence.section not in SKIPPED_SECTIONS
            for clause_start, clause_end in split_clauses(text, sentence.start, sentence.end)
            for start, end in cut_cues(text, clause_start, clause_end, cues.ranges)
        ]
        flags = self._context.flags(cues, [(s, e) for _, s, e in pieces])
        spans = [
            Span(
                span_id=f"s{i:04d}",
                start=start,
                end=end,
                text=text[start:end],
                sentence_start=sentence.start,
                sentence_end=sentence.end,
                section=sentence.section,
                context=with_section(
                    flags[i].model_copy(update={"negated": True})
                    if states_an_absence(text[start:end])
                    else flags[i],
                    sentence.section,
                ),
            )
            for i, (sentence, start, end) in enumerate(pieces)
        ]
        return SegmentedNote(
            note_id=note.note_id,
            text=text,
            spans=spans,
            timings={"segmenter": time.perf_counter() - started},
        )
