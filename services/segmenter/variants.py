"""Bench-only alternatives to our sentence and section detection, to compare on CodiEsp.

Each builder returns a ``SentenceSplitter`` for ``Segmenter(sentence_splitter=...)``; only
``bench/segmenter_variants.py`` uses them (the service always uses ours). Everything after
sentences (clauses, cue cutting, trimming, ConText with these sentences as its scope) is ours.

- :func:`pyrush_sentences`: PyRuSH decides where sentences start and end, with medspaCy's
  English rules (``resources/en/rush_rules.tsv``, the rules ``medspacy.load`` gives its
  ``medspacy_pyrush`` component), read as character spans. Our header lines still decide the
  section, and header text and list bullets are still left out (a header is not a condition).
- :func:`medspacy_sections`: medspaCy's ``Sectionizer`` with its default English rules decides
  the sections: a title anywhere (its defaults do not require a line start) ends the sentence
  before it, its text belongs to no sentence, and its section runs to the next title. Our
  sentence rules split the rest, with our header detection off. Its categories keep their
  names except where ours act on them: ``medications`` (no spans), ``patient_instructions``
  -> ``instructions`` and ``other`` / ``signature`` -> ``administrative`` (no spans either).
"""

from __future__ import annotations

import warnings
from bisect import bisect_right
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from icdcoder.services.segmenter.sections import Header, line_header
from icdcoder.services.segmenter.sentences import (
    BULLET_RE,
    Sentence,
    SentenceSplitter,
    lines,
    split_sentences,
    trimmed_sentence,
)

#: medspaCy Sectionizer categories -> our section names, where ours treat a section specially.
MEDSPACY_SECTION_NAMES = {
    "patient_instructions": "instructions",
    "other": "administrative",
    "signature": "administrative",
}


def pyrush_sentences() -> SentenceSplitter:
    """PyRuSH's sentence boundaries; our sections, header text and bullets left out."""
    from PyRuSH import RuSH

    rush: Any = RuSH(rules=str(_medspacy_resources() / "rush_rules.tsv"))

    def split(text: str) -> list[Sentence]:
        ours = list(split_sentences(text))
        starts = [s.start for s in ours]
        markup = list(_markup(text))
        out: list[Sentence] = []
        for span in rush.segToSentenceSpans(text):
            for start, end in _minus(int(span.begin), int(span.end), markup):
                i = bisect_right(starts, start) - 1
                out.extend(trimmed_sentence(text, start, end, ours[i].section if i >= 0 else ""))
        return out

    return split


def medspacy_sections() -> SentenceSplitter:
    """medspaCy Sectionizer's sections; our sentence rules without our header detection."""
    import spacy
    from medspacy.section_detection import Sectionizer  # registers "medspacy_sectionizer"

    nlp: Any = spacy.blank("en")
    nlp.add_pipe("medspacy_sectionizer")
    assert isinstance(nlp.get_pipe("medspacy_sectionizer"), Sectionizer)

    def split(text: str) -> list[Sentence]:
        with warnings.catch_warnings():  # its rules are all phrases: spaCy warns of no patterns
            warnings.filterwarnings("ignore", message=r"\[W036\]")
            doc = nlp(text)
        titles: list[tuple[int, int]] = []
        names: list[str] = []
        for section in doc._.sections:
            if section.category is None or section.title_end <= section.title_start:
                continue
            title = doc[section.title_start : section.title_end]
            titles.append((title.start_char, title.end_char))
            names.append(MEDSPACY_SECTION_NAMES.get(section.category, section.category))
        title_ends = [end for _, end in titles]
        out: list[Sentence] = []
        for sentence in split_sentences(text, header=_no_header):
            for start, end in _minus(sentence.start, sentence.end, titles):
                i = bisect_right(title_ends, start) - 1
                out.extend(trimmed_sentence(text, start, end, names[i] if i >= 0 else ""))
        return out

    return split


def _no_header(text: str, start: int, end: int) -> Header | None:
    return None


def _markup(text: str) -> Iterator[tuple[int, int]]:
    """Header text and list bullets, as :func:`split_sentences` leaves them out, in order."""
    for start, end in lines(text):
        header = line_header(text, start, end)
        if header is not None:
            yield start, header[1]
            start = header[1]
        bullet = BULLET_RE.match(text, start, end)
        if bullet and bullet.end() > start:
            yield start, bullet.end()


def _minus(start: int, end: int, cuts: list[tuple[int, int]]) -> Iterator[tuple[int, int]]:
    """The parts of ``[start, end)`` outside ``cuts`` (sorted, not overlapping)."""
    i = bisect_right(cuts, (start, start)) - 1
    i = max(i, 0)
    pos = start
    while i < len(cuts) and cuts[i][0] < end:
        cut_start, cut_end = cuts[i]
        i += 1
        if cut_end <= pos:
            continue
        if cut_start > pos:
            yield pos, cut_start
        pos = max(pos, cut_end)
    if pos < end:
        yield pos, end


def _medspacy_resources() -> Path:
    """medspacy ships its English resources beside the package (resources/en)."""
    import medspacy

    return Path(medspacy.__file__).resolve().parents[1] / "resources" / "en"
