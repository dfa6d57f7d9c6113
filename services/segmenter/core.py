"""Segmenter core: a note -> sections, sentences and candidate spans with context flags.

- Sections: header lines ("Past Medical History:", "DISCHARGE DIAGNOSES") open a section; each
  span carries the normalised section name ("past_medical_history"), "" before any header.
  Header text never belongs to a span; medication and administrative sections yield no spans.
- Sentences: sentence punctuation, blank lines, list items and header lines end a sentence; a
  line wrapped inside a paragraph does not.
- Spans: the clauses and list items of a sentence, split at ";", ":", ", ", and at " and " /
  " or " / relative pronouns between clauses, trimmed of bullets, punctuation and leading
  connectives. ``text[start:end] == span.text`` always.
- Context: medspacy's ConText over the whole note (sentences as its scope) marks each span
  negated, hypothetical (uncertain or hypothetical), family or historical. A span in the
  family-history section is family. A past-medical-history entry is not historical by itself
  (chronic conditions listed there are coded); only a cue ("history of", "s/p") makes it so.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from shared.messages import ContextFlags, NoteIn, SegmentedNote, Span
from shared.settings import SegmenterSettings


class EmptyNoteError(ValueError):
    """The note has no text to code."""


class NoteTooLargeError(ValueError):
    """The note is over the configured size limit."""


#: Header spellings -> section names.
SECTION_ALIASES: dict[str, str] = {
    "chief complaint": "chief_complaint",
    "reason for admission": "chief_complaint",
    "reason for visit": "chief_complaint",
    "history of present illness": "history_of_present_illness",
    "hpi": "history_of_present_illness",
    "present illness": "history_of_present_illness",
    "past medical history": "past_medical_history",
    "pmh": "past_medical_history",
    "medical history": "past_medical_history",
    "past history": "past_medical_history",
    "past surgical history": "past_surgical_history",
    "surgical history": "past_surgical_history",
    "family history": "family_history",
    "fh": "family_history",
    "social history": "social_history",
    "review of systems": "review_of_systems",
    "ros": "review_of_systems",
    "physical exam": "physical_exam",
    "physical examination": "physical_exam",
    "examination": "physical_exam",
    "exam": "physical_exam",
    "labs": "labs",
    "laboratory": "labs",
    "laboratory data": "labs",
    "laboratory results": "labs",
    "imaging": "imaging",
    "hospital course": "hospital_course",
    "brief hospital course": "hospital_course",
    "assessment": "assessment_plan",
    "plan": "assessment_plan",
    "assessment and plan": "assessment_plan",
    "assessment/plan": "assessment_plan",
    "impression": "assessment_plan",
    "impression and plan": "assessment_plan",
    "diagnoses": "discharge_diagnoses",
    "diagnosis": "discharge_diagnoses",
    "discharge diagnoses": "discharge_diagnoses",
    "discharge diagnosis": "discharge_diagnoses",
    "final diagnoses": "discharge_diagnoses",
    "final diagnosis": "discharge_diagnoses",
    "admission diagnoses": "admission_diagnoses",
    "admission diagnosis": "admission_diagnoses",
    "principal diagnosis": "discharge_diagnoses",
    "secondary diagnoses": "discharge_diagnoses",
    "procedures": "procedures",
    "procedure": "procedures",
    "operations": "procedures",
    "medications": "medications",
    "discharge medications": "medications",
    "home medications": "medications",
    "admission medications": "medications",
    "current medications": "medications",
    "allergies": "allergies",
    "discharge instructions": "instructions",
    "follow up": "instructions",
    "follow-up": "instructions",
    "disposition": "instructions",
    "discharge disposition": "instructions",
    "condition at discharge": "instructions",
    "discharge condition": "instructions",
    "admission date": "administrative",
    "discharge date": "administrative",
    "date of admission": "administrative",
    "date of discharge": "administrative",
    "service": "administrative",
    "attending": "administrative",
    "date of birth": "administrative",
}
#: Sections whose lines are not diagnoses: they yield no spans.
SKIPPED_SECTIONS = frozenset({"medications", "administrative", "instructions"})
FAMILY_SECTIONS = frozenset({"family_history"})

_HEADER_RE = re.compile(r"[ \t]*([A-Za-z][A-Za-z &/'()-]{0,48}?)[ \t]*:[ \t]*")
_CAPS_TITLE_RE = re.compile(r"[ \t]*([A-Z][A-Z &/'()-]{2,48})[ \t]*$")
_BULLET_RE = re.compile(r"[ \t]*(?:\d{1,3}[.)]|[-*\u2022])[ \t]+")
_SENTENCE_END_RE = re.compile(r"(?<=[.!?])[ \t]+(?=[\"'(\[]?[A-Z0-9])")
_CLAUSE_SPLIT_RE = re.compile(
    r"\s*[;:]\s*|,\s+(?:and\s+|or\s+|but\s+)?|\s+(?:and|or|but|whereas|although|which|who)\s+",
    re.IGNORECASE,
)
_LEADING_RE = re.compile(
    r"(?:(?:and|or|but|with|by|of|then|also|as well as|which|who|had|has|have|having)\b[\s,]*)+",
    re.IGNORECASE,
)
_TRIM = " \t\r\n.,;:!?-*\u2022\"'"
_LETTER_RE = re.compile(r"[A-Za-z]{2,}")
_NUMBERED_ONLY_RE = re.compile(r"^\s*\d{1,3}[.)]?\s*$")
MIN_CLAUSE_WORDS = 2


@dataclass(frozen=True)
class Sentence:
    start: int
    end: int
    section: str


def normalise_section(header: str) -> str:
    key = " ".join(header.lower().replace("_", " ").split())
    return SECTION_ALIASES.get(key) or re.sub(r"[^a-z0-9]+", "_", key).strip("_")


class Segmenter:
    """Built once per process (loads the ConText rules); ``segment`` is then pure."""

    def __init__(self, settings: SegmenterSettings | None = None) -> None:
        self._max_chars = (settings or SegmenterSettings()).max_note_chars
        import medspacy.context  # noqa: F401  (registers the "medspacy_context" factory)
        import spacy

        self._nlp: Any = spacy.blank("en")
        self._context: Any = self._nlp.add_pipe("medspacy_context", config={"rules": "default"})

    def segment(self, note: NoteIn) -> SegmentedNote:
        started = time.perf_counter()
        text = note.text
        if not text.strip():
            raise EmptyNoteError("the note is empty")
        if len(text) > self._max_chars:
            raise NoteTooLargeError(
                f"the note has {len(text)} characters, over the limit of {self._max_chars}"
            )
        sentences = list(split_sentences(text))
        pieces = [
            (sentence, start, end)
            for sentence in sentences
            if sentence.section not in SKIPPED_SECTIONS
            for start, end in split_clauses(text, sentence.start, sentence.end)
        ]
        doc = self._doc(text, sentences)
        pieces = [(sen, *_after_cue(doc, start, end)) for sen, start, end in pieces]
        flags = self._context_flags(doc, [(s, e) for _, s, e in pieces])
        spans = [
            Span(
                span_id=f"s{i:04d}",
                start=start,
                end=end,
                text=text[start:end],
                sentence_start=sentence.start,
                sentence_end=sentence.end,
                section=sentence.section,
                context=_with_section(flags[i], sentence.section),
            )
            for i, (sentence, start, end) in enumerate(pieces)
        ]
        return SegmentedNote(
            note_id=note.note_id,
            text=text,
            spans=spans,
            timings={"segmenter": time.perf_counter() - started},
        )

    def _doc(self, text: str, sentences: list[Sentence]) -> Any:
        """The note as a spaCy doc with our sentences, and ConText's cues found (no targets)."""
        doc = self._nlp.make_doc(text)
        starts = {s.start for s in sentences}
        for token in doc:
            token.is_sent_start = token.i == 0 or token.idx in starts
        return self._context(doc)

    def _context_flags(self, doc: Any, pieces: list[tuple[int, int]]) -> list[ContextFlags]:
        ents: list[Any] = []
        owners: list[int] = []
        last_token = -1
        for i, (start, end) in enumerate(pieces):
            ent = doc.char_span(start, end, label="SPAN", alignment_mode="expand")
            if ent is None or ent.start <= last_token:
                continue  # overlapping after token alignment: keep the first
            ents.append(ent)
            owners.append(i)
            last_token = ent.end - 1
        doc.ents = ents
        doc = self._context(doc)
        found: dict[int, set[str]] = {}
        for target, modifier in doc._.context_graph.edges:
            m_start, m_end = modifier.modifier_span
            if target.start <= m_start and m_end <= target.end:
                continue  # a cue inside the span ("without complications") is part of it
            found.setdefault(target.start, set()).add(modifier.category)
        flags = [ContextFlags() for _ in pieces]
        for owner, ent in zip(owners, ents, strict=True):
            flags[owner] = _flags(found.get(ent.start, set()))
        return flags


def _flags(categories: set[str]) -> ContextFlags:
    return ContextFlags(
        negated="NEGATED_EXISTENCE" in categories,
        hypothetical=bool(categories & {"POSSIBLE_EXISTENCE", "HYPOTHETICAL", "UNCERTAIN"}),
        family="FAMILY" in categories,
        historical="HISTORICAL" in categories,
    )


#: A cue this many tokens into a clause or fewer is a prefix ("He denies chest pain").
MAX_CUE_OFFSET = 3


def _after_cue(doc: Any, start: int, end: int) -> tuple[int, int]:
    """Cut a leading ConText cue off a clause: "He denies chest pain" -> "chest pain".

    ConText never lets a cue modify a target that contains it, and the condition words are
    what retrieval should see; the cue still sets the flags from outside the span.
    """
    ent = doc.char_span(start, end, alignment_mode="expand")
    if ent is None:
        return start, end
    cut = start
    for modifier in doc._.context_graph.modifiers:
        m_start, m_end = modifier.modifier_span
        if modifier.direction in ("TERMINATE", "PSEUDO"):
            continue
        if ent.start <= m_start <= ent.start + MAX_CUE_OFFSET and m_end < ent.end:
            cut = max(cut, doc[m_end - 1].idx + len(doc[m_end - 1].text))
    if cut == start:
        return start, end
    trimmed = _trim(doc.text, cut, end)
    return trimmed if trimmed is not None else (start, end)


def _with_section(flags: ContextFlags, section: str) -> ContextFlags:
    if section in FAMILY_SECTIONS and not flags.family:
        return flags.model_copy(update={"family": True})
    return flags


def _lines(text: str) -> Iterator[tuple[int, int]]:
    pos = 0
    for line in text.splitlines(keepends=True):
        yield pos, pos + len(line.rstrip("\r\n"))
        pos += len(line)


def _header(text: str, start: int, end: int) -> tuple[str, int] | None:
    """(section name, where the content after the header starts) if the line opens a section."""
    line = text[start:end]
    match = _HEADER_RE.match(line)
    if match:
        name = " ".join(match.group(1).split()).lower()
        rest = line[match.end() :].strip()
        if name in SECTION_ALIASES or (not rest and len(name.split()) <= 6):
            return normalise_section(name), start + match.end()
    caps = _CAPS_TITLE_RE.match(line)
    if caps and len(caps.group(1).split()) <= 6:
        return normalise_section(caps.group(1)), end
    return None


def split_sentences(text: str) -> Iterator[Sentence]:
    """Sentences with their section; header text and list bullets are left out."""
    section = ""
    open_start: int | None = None
    open_end = 0

    def close() -> Iterator[Sentence]:
        nonlocal open_start
        if open_start is not None:
            yield from _sentences_in(text, open_start, open_end, section)
        open_start = None

    for start, end in _lines(text):
        header = _header(text, start, end)
        if header is not None:
            yield from close()
            section, start = header
        bullet = _BULLET_RE.match(text, start, end)
        if bullet or not text[start:end].strip():
            yield from close()
            if bullet:
                start = bullet.end()
        if not text[start:end].strip():
            continue
        if open_start is None:
            open_start = start
        open_end = end
        if text[start:end].rstrip().endswith((".", "!", "?", ":")):
            yield from close()
    yield from close()


def _sentences_in(text: str, start: int, end: int, section: str) -> Iterator[Sentence]:
    pos = start
    for match in _SENTENCE_END_RE.finditer(text, start, end):
        yield from _trimmed_sentence(text, pos, match.start(), section)
        pos = match.end()
    yield from _trimmed_sentence(text, pos, end, section)


def _trimmed_sentence(text: str, start: int, end: int, section: str) -> Iterator[Sentence]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if end > start and _LETTER_RE.search(text, start, end):
        yield Sentence(start, end, section)


def split_clauses(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    """Clause offsets inside a sentence, trimmed; fragments without words are dropped."""
    pos = start
    raw: list[tuple[int, int]] = []
    for match in _CLAUSE_SPLIT_RE.finditer(text, start, end):
        raw.append((pos, match.start()))
        pos = match.end()
    raw.append((pos, end))
    merged = _merge_short(text, raw)
    for s, e in merged:
        trimmed = _trim(text, s, e)
        if trimmed is not None:
            yield trimmed


#: Words that qualify a condition but never name one: a fragment of only these joins the
#: clause before it ("Hyperlipidemia, unspecified").
QUALIFIERS = frozenset(
    [
        "unspecified",
        "acute",
        "chronic",
        "mild",
        "moderate",
        "severe",
        "bilateral",
        "left",
        "right",
        "other",
        "nos",
        "primary",
        "secondary",
        "recurrent",
        "initial",
        "subsequent",
        "stage",
    ]
)


def _merge_short(text: str, parts: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Join fragments that cannot stand alone to the clause before them.

    A qualifier-only fragment always joins; a one-word fragment joins across " and " / " or "
    ("acute and chronic") but not across punctuation, where it is a list item ("fever, cough").
    """
    out: list[tuple[int, int]] = []
    for s, e in parts:
        if out and _joins_previous(text, out[-1], (s, e)):
            out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out


def _joins_previous(text: str, prev: tuple[int, int], cur: tuple[int, int]) -> bool:
    words = [w.strip(".,()").lower() for w in text[cur[0] : cur[1]].split()]
    if words and all(w in QUALIFIERS for w in words):
        return True
    if any(c in text[prev[1] : cur[0]] for c in ";:,"):
        return False
    return len(words) < MIN_CLAUSE_WORDS or len(text[prev[0] : prev[1]].split()) < MIN_CLAUSE_WORDS


def _trim(text: str, start: int, end: int) -> tuple[int, int] | None:
    while start < end and text[start] in _TRIM:
        start += 1
    while end > start and text[end - 1] in _TRIM:
        end -= 1
    lead = _LEADING_RE.match(text, start, end)
    if lead:
        start = lead.end()
    if end - start < 2 or not _LETTER_RE.search(text, start, end):
        return None
    if _NUMBERED_ONLY_RE.match(text[start:end]):
        return None
    # keep brackets balanced at the edges: "(congestive" -> drop a dangling opener
    if text[end - 1] == "(":
        end -= 1
    return (start, end) if end > start else None
