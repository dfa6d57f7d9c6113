"""Segmenter core: a note -> sections, sentences and candidate spans with context flags.

- Sections: header lines ("Past Medical History:", "DISCHARGE DIAGNOSES") open a section; each
  span carries the normalised section name ("past_medical_history"), "" before any header. A
  header with its content on the same line ("Family history: mother with ...") covers that
  content only, up to the end of its sentence. Header text never belongs to a span; medication
  and administrative sections yield no spans.
- Sentences: sentence punctuation, blank lines, list items and header lines end a sentence; a
  line wrapped inside a paragraph does not.
- Spans: the clauses and list items of a sentence, split at ";", ":", ", ", and at " and " /
  " or " / relative pronouns between clauses ("with" never splits: "diabetes with nephropathy"
  is one condition), then with ConText cues cut out ("He denies chest pain" -> "chest pain",
  "Pneumonia was ruled out" -> "Pneumonia"), trimmed of bullets, punctuation, unbalanced
  brackets and leading/trailing function words. ``text[start:end] == span.text`` always.
- Context: medspacy's ConText (default rules, a few replaced and added: see ``context_rules``)
  over the whole note, sentences as its scope, marks each span negated, hypothetical (uncertain
  or hypothetical), family or historical; "no history of X" is negated and historical. A span in
  the family-history section is family, one in a differential-diagnosis section hypothetical.
  A past-medical-history entry is not historical by itself (chronic conditions listed there are
  coded); only a cue ("history of", "s/p", "previous") makes it so.

Patient text never leaves this module except in the returned model: nothing here logs.
"""

from __future__ import annotations

import re
import time
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import Any, cast

from icdcoder.shared.messages import ContextFlags, NoteIn, SegmentedNote, Span
from icdcoder.shared.notes import check_note_text
from icdcoder.shared.settings import SegmenterConfig


def _words(words: str) -> list[str]:
    return words.split()


#: Header spellings -> section names.
SECTION_ALIASES: dict[str, str] = {
    "chief complaint": "chief_complaint",
    "reason for admission": "chief_complaint",
    "reason for visit": "chief_complaint",
    "reason for consultation": "chief_complaint",
    "history of present illness": "history_of_present_illness",
    "hpi": "history_of_present_illness",
    "present illness": "history_of_present_illness",
    "current illness": "history_of_present_illness",
    "past medical history": "past_medical_history",
    "pmh": "past_medical_history",
    "medical history": "past_medical_history",
    "past history": "past_medical_history",
    "personal history": "past_medical_history",
    "personal background": "past_medical_history",
    "medical background": "past_medical_history",
    "past surgical history": "past_surgical_history",
    "surgical history": "past_surgical_history",
    "psh": "past_surgical_history",
    "family history": "family_history",
    "family medical history": "family_history",
    "family background": "family_history",
    "fh": "family_history",
    "fhx": "family_history",
    "social history": "social_history",
    "sh": "social_history",
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
    "pertinent results": "labs",
    "imaging": "imaging",
    "radiology": "imaging",
    "hospital course": "hospital_course",
    "brief hospital course": "hospital_course",
    "clinical course": "hospital_course",
    "assessment": "assessment_plan",
    "plan": "assessment_plan",
    "assessment and plan": "assessment_plan",
    "assessment/plan": "assessment_plan",
    "a/p": "assessment_plan",
    "impression": "assessment_plan",
    "impression and plan": "assessment_plan",
    "diagnoses": "discharge_diagnoses",
    "diagnosis": "discharge_diagnoses",
    "discharge diagnoses": "discharge_diagnoses",
    "discharge diagnosis": "discharge_diagnoses",
    "final diagnoses": "discharge_diagnoses",
    "final diagnosis": "discharge_diagnoses",
    "principal diagnosis": "discharge_diagnoses",
    "primary diagnosis": "discharge_diagnoses",
    "secondary diagnoses": "discharge_diagnoses",
    "admission diagnoses": "admission_diagnoses",
    "admission diagnosis": "admission_diagnoses",
    "admitting diagnosis": "admission_diagnoses",
    "differential diagnosis": "differential_diagnosis",
    "differential diagnoses": "differential_diagnosis",
    "differential": "differential_diagnosis",
    "ddx": "differential_diagnosis",
    "procedures": "procedures",
    "procedure": "procedures",
    "operations": "procedures",
    "medications": "medications",
    "meds": "medications",
    "discharge medications": "medications",
    "home medications": "medications",
    "admission medications": "medications",
    "current medications": "medications",
    "medications on admission": "medications",
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
HYPOTHETICAL_SECTIONS = frozenset({"differential_diagnosis"})
#: A line that is not a known header opens a section only if it names one with these words
#: ("Neurological examination:"), so a lone "HIV seropositive:" or "COPD" stays a span.
HEADER_WORDS = frozenset(
    _words("""allergies assessment background complaint complaints course data diagnoses diagnosis
    evaluation evolution exam examination findings history illness imaging impression
    information instructions labs laboratory medications note plan procedures recommendations
    report results review studies summary systems tests treatment vitals""")
)
MAX_HEADER_WORDS = 6

_HEADER_RE = re.compile(r"[ \t]*([A-Za-z][A-Za-z &/'()-]{0,48}?)[ \t]*:[ \t]*")
_CAPS_TITLE_RE = re.compile(r"[ \t]*([A-Z][A-Z &/'()-]{2,48})[ \t]*:?[ \t]*$")
_BULLET_RE = re.compile(r"[ \t]*(?:\d{1,3}[.)]|[-*\u2022\u25aa\u25cf])[ \t]+")
_SENTENCE_END_RE = re.compile(r"(?<=[.!?])[ \t]+(?=[\"'(\[]?[A-Z0-9])")
_CLAUSE_SPLIT_RE = re.compile(
    r"\s*[;:]\s*|,\s+(?:and\s+|or\s+|but\s+)?|\s+(?:and|or|but|whereas|although|which|who)\s+",
    re.IGNORECASE,
)
_LEADING_RE = re.compile(
    r"(?:(?:and|or|but|with|by|of|for|then|also|as well as|which|who|had|has|have|having"
    r"|he|she|they|it|the patient|patient|pt|was|were|is|are|a|an|the|reports|reported"
    # "a 67-year-old man with", "one-and-a-half-year-old girl who presented with"
    r"|(?:an?\s+)?[a-z0-9]+(?:-[a-z]+)*[- ](?:year|month|week|day)s?[- ]old(?:\s+[a-z]+){0,3}?"
    r"\s+(?:with|who\s+(?:has|had|presented\s+with|presents\s+with))"
    r"|(?:presented|presents|presenting|admitted|diagnosed)\s+with"
    r"|(?:complaining|complains|complained)\s+of|(?:consulted|admitted|treated|operated)\s+for"
    r")(?=[\s,]|$)[\s,]*)+",
    re.IGNORECASE,
)
_TRAILING_RE = re.compile(
    r"(?<![\w'-])(?:was|were|is|are|be|been|being|has|have|had|the|an|of|in|on|at|to|for|with"
    r"|by|from|his|her|their|its|and|or|that|which|who|as|than|showed|shows|revealed"
    r"|(?:with|of|for|in|on|had|has|have|and|or|to|by|from|as|is|was) an?)$",
    re.IGNORECASE,
)
_TRIM = " \t\r\n\f\v\u00a0\u2028\u2029.,;:!?-*\u2022\"'"
_LETTER_RE = re.compile(r"[A-Za-z]{2,}")
_WORD_RE = re.compile(r"[A-Za-z]+")
_BRACKETS = {"(": ")", "[": "]"}
#: Words that never name a condition: a span of only these is dropped ("Patient", "He was").
STOPWORDS = frozenset(
    _words("""a an the and or nor but of in on at to for with without by from as into onto than then
    so also that this these those there here which who whom whose what when where while it its
    he she they we you i him her them his their our your me my patient patients pt mr mrs ms
    was were is are be been being has have had having do does did not no any some all both
    either neither other such very more most only same s""")
)

#: Words that qualify a condition but never name one: a fragment of only these joins the
#: clause before it ("Hyperlipidemia, unspecified", "CKD, stage 3").
QUALIFIERS = frozenset(
    _words("""unspecified acute chronic subacute mild moderate severe bilateral left right other nos
    primary secondary recurrent initial subsequent encounter sequela stage type grade class
    closed open displaced nondisplaced intractable uncomplicated complicated intermittent
    persistent controlled uncontrolled organism site""")
)
#: A comma fragment opening with one of these belongs to the clause before it
#: ("Type 2 diabetes mellitus, with hyperglycemia").
JOINING_OPENERS = frozenset({"with", "without"})
MIN_CLAUSE_WORDS = 2
#: Endings of words that name a condition on their own ("hematuria", "hypertension").
_CONDITION_NOUN_RE = re.compile(
    r"(?:ia|itis|osis|oma|omas|emia|pathy|algia|ism|iasis|plegia|rrhea|cele|ectasis|trophy"
    r"|megaly|ion|ions|ure|ures|ness|sis)$",
    re.IGNORECASE,
)

#: ConText cues that are part of a condition's name in ICD-10-CM's own wording: they never
#: split a span ("Type 2 diabetes mellitus without complications") and modify no other span
#: ("diabetes without complications, hypertension": the hypertension is not negated).
KEEP_INSIDE_CUES = frozenset({"without"})
#: Terminations that are part of a condition's name too ("secondary hyperparathyroidism",
#: "hypertension secondary to renal artery stenosis", "Still's disease"): never cut.
KEEP_INSIDE_TERMINATIONS = frozenset({"secondary", "secondary to", "still"})
#: Tokens that make a negation cue a history cue too ("no history of nephrolithiasis").
HISTORY_TOKENS = frozenset({"history", "hx", "hist", "h/o"})

#: Relatives that are the patient in pediatric reports ("the child", "daughter vesicles")
#: unless a possessive names them ("her son"): ConText's default family rule is replaced.
_RELATIVES = _words(
    """aunt aunts brother brothers cousin cousins dad dads fam family families father fathers
    grandchild grandchildren granddaughter granddaughters grandfather grandfathers
    grandmother grandmothers grandparent grandparents grandson grandsons husband mom moms mother
    mothers nephew nephews niece nieces parent parents partner sibling siblings sister sisters
    spouse uncle uncles wife"""
)
_OFFSPRING = _words("child children son sons daughter daughters")
_POSSESSIVES = _words("his her their whose")
_TIME_UNITS = _words("day days week weeks month months hour hours night nights year years")


def context_rules() -> list[Any]:
    """The ConText rules used: medspacy's defaults, less its family rule, plus these."""
    from medspacy.context import ConTextRule

    def rule(literal: str, category: str, direction: str, pattern: Any = None) -> Any:
        return ConTextRule(literal, category, pattern=pattern, direction=direction)

    def any_of(*words: str) -> dict[str, Any]:
        return {"LOWER": {"IN": list(words)}}

    be = any_of("was", "were", "is", "are", "been", "being")
    defaults = [r for r in ConTextRule.from_json(_default_rules_path()) if r.category != "FAMILY"]
    added = [
        # family: relatives, and offspring only with a possessive
        rule(
            "relative", "FAMILY", "FORWARD", [any_of(*_RELATIVES), {**any_of("'s", "'"), "OP": "?"}]
        ),
        rule("his son", "FAMILY", "FORWARD", [any_of(*_POSSESSIVES), any_of(*_OFFSPRING)]),
        # historical
        rule("status post", "HISTORICAL", "FORWARD"),
        rule("s/p", "HISTORICAL", "FORWARD"),
        rule("previous", "HISTORICAL", "FORWARD", [any_of("previous", "previously", "prior")]),
        rule("former", "HISTORICAL", "FORWARD", [any_of("former", "formerly")]),
        rule("prior to", "HISTORICAL", "PSEUDO", [any_of("prior", "previous"), {"LOWER": "to"}]),
        rule(
            "previous days",
            "HISTORICAL",
            "PSEUDO",
            [
                any_of("previous", "prior", "preceding"),
                {"LIKE_NUM": True, "OP": "?"},
                any_of(*_TIME_UNITS),
            ],
        ),
        # uncertain
        rule(
            "suspected",
            "POSSIBLE_EXISTENCE",
            "FORWARD",
            [any_of("suspected", "suspect", "probable", "presumed", "presumptive", "possibly")],
        ),
        rule("questionable", "POSSIBLE_EXISTENCE", "FORWARD"),
        rule(
            "suspicion of",
            "POSSIBLE_EXISTENCE",
            "FORWARD",
            [{"LOWER": "suspicion"}, any_of("of", "for")],
        ),
        rule("differential diagnosis", "POSSIBLE_EXISTENCE", "FORWARD"),
        rule("was suspected", "POSSIBLE_EXISTENCE", "BACKWARD", [be, {"LOWER": "suspected"}]),
        rule(
            "cannot be excluded",
            "POSSIBLE_EXISTENCE",
            "BACKWARD",
            [any_of("cannot", "not"), {"LOWER": "be", "OP": "?"}, any_of("excluded", "ruled")],
        ),
        rule(
            "as possible",
            "POSSIBLE_EXISTENCE",
            "PSEUDO",
            [any_of("as", "if"), {"LOWER": "possible"}],
        ),
        # a new event ends any cue's scope: "history of ulcer, consulted for abdominal pain"
        rule(
            "consulted",
            "HISTORICAL",
            "TERMINATE",
            [
                any_of(
                    "consulted",
                    "consults",
                    "complaining",
                    "complains",
                    "complained",
                    "presented",
                    "admitted",
                    "came",
                    "comes",
                    "attended",
                    "referred",
                    "currently",
                )
            ],
        ),
        # hypothetical (the default "risks of" rule can never match: one token, two words)
        rule("risk of", "HYPOTHETICAL", "FORWARD", [any_of("risk", "risks"), any_of("of", "for")]),
        rule("in case of", "HYPOTHETICAL", "FORWARD"),
        # negated ("was negative for X" negates X, not what comes before)
        rule(
            "was negative for",
            "NEGATED_EXISTENCE",
            "FORWARD",
            [be, any_of("negative", "neg"), any_of("for", "of")],
        ),
        rule(
            "was excluded", "NEGATED_EXISTENCE", "BACKWARD", [be, any_of("excluded", "discarded")]
        ),
        rule(
            "ruling out",
            "NEGATED_EXISTENCE",
            "FORWARD",
            [any_of("ruling", "excluding"), {"LOWER": "out", "OP": "?"}],
        ),
    ]
    return defaults + added


def as_phrases(rules: list[Any]) -> list[Any]:
    """The rules with each token pattern spelled out as literal phrases, same matches.

    ConText matches token patterns with spaCy's Matcher, whose optional/"IN" tokens cost
    ~20 ms a note; spelled out (under a thousand phrases) they go to its PhraseMatcher, which
    costs well under one. Patterns using more than "LOWER" (a string or {"IN": [...]}) and
    "OP": "?" stay token patterns (at least one should: spaCy warns on an empty Matcher).
    """
    from medspacy.context import ConTextRule

    out: list[Any] = []
    for rule in rules:
        if not isinstance(rule.pattern, list):
            out.append(rule)
            continue
        if any(set(t) - {"LOWER", "OP"} or t.get("OP", "?") != "?" for t in rule.pattern):
            out.append(rule)
            continue
        choices: list[list[str | None]] = []
        for token in rule.pattern:
            value = token["LOWER"]
            words: list[str | None] = list(value["IN"]) if isinstance(value, dict) else [value]
            choices.append([*words, None] if "OP" in token else words)
        for combination in product(*choices):
            words_used = [w for w in combination if w is not None]
            if not words_used:
                continue
            out.append(
                ConTextRule(
                    " ".join(words_used),
                    rule.category,
                    direction=rule.direction,
                    allowed_types=rule.allowed_types,
                    excluded_types=rule.excluded_types,
                    max_scope=rule.max_scope,
                    max_targets=rule.max_targets,
                    terminated_by=rule.terminated_by,
                )
            )
    return out


def _default_rules_path() -> str:
    """medspacy ships its English ConText rules beside the package (resources/en)."""
    import medspacy.context.context as module

    return str(
        Path(module.__file__).resolve().parents[2] / "resources" / "en" / "context_rules.json"
    )


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

    def __init__(self, config: SegmenterConfig | None = None) -> None:
        self._max_chars = (config or SegmenterConfig()).max_note_chars
        import medspacy.context  # registers the "medspacy_context" factory
        import spacy

        self._graph_cls: Any = medspacy.context.ConTextGraph
        self._nlp: Any = spacy.blank("en")
        self._context: Any = cast(
            Any, self._nlp.add_pipe("medspacy_context", config={"rules": None})
        )
        self._context.add(as_phrases(context_rules()))

    def segment(self, note: NoteIn) -> SegmentedNote:
        started = time.perf_counter()
        text = note.text
        check_note_text(text, self._max_chars)
        sentences = list(split_sentences(text))
        doc = self._nlp.make_doc(text)
        _set_sentences(doc, sentences)
        modifiers = self._modifiers(doc)
        cues = _cue_ranges(doc, modifiers)
        pieces = [
            (sentence, start, end)
            for sentence in sentences
            if sentence.section not in SKIPPED_SECTIONS
            for clause_start, clause_end in split_clauses(text, sentence.start, sentence.end)
            for start, end in cut_cues(text, clause_start, clause_end, cues)
        ]
        flags = self._context_flags(doc, modifiers, [(s, e) for _, s, e in pieces])
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

    def _modifiers(self, doc: Any) -> list[Any]:
        """ConText's cues in the doc, scopes set (matched once; targets come later)."""
        doc.ents = ()
        doc = self._context(doc)
        return list(doc._.context_graph.modifiers)

    def _context_flags(
        self, doc: Any, modifiers: list[Any], pieces: list[tuple[int, int]]
    ) -> list[ContextFlags]:
        """Each piece as a ConText target: its flags (no flags if it shares a token)."""
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
        graph = self._graph_cls(targets=doc.ents, modifiers=modifiers)
        graph.apply_modifiers()
        # medspacy's overlap test misses a cue strictly inside a target; such a cue is part of
        # the condition's name ("without complications") and must not modify it
        graph.edges = [
            (target, modifier)
            for target, modifier in graph.edges
            if not target.start <= modifier.modifier_span[0] < target.end
            and _cue_text(doc, modifier) not in KEEP_INSIDE_CUES
        ]
        self._context.set_context_attributes(graph.edges)
        doc._.context_graph = graph
        history_negated = {
            target.start
            for target, modifier in graph.edges
            if modifier.category == "NEGATED_EXISTENCE" and _mentions_history(doc, modifier)
        }
        flags = [ContextFlags() for _ in pieces]
        for owner, ent in zip(owners, doc.ents, strict=True):
            flags[owner] = ContextFlags(
                negated=ent._.is_negated,
                hypothetical=ent._.is_uncertain or ent._.is_hypothetical,
                family=ent._.is_family,
                historical=ent._.is_historical or ent.start in history_negated,
            )
        return flags


def _cue_text(doc: Any, modifier: Any) -> str:
    start, end = modifier.modifier_span
    return str(doc[start:end].text.lower())


def _mentions_history(doc: Any, modifier: Any) -> bool:
    start, end = modifier.modifier_span
    return any(token.lower_ in HISTORY_TOKENS for token in doc[start:end])


def _set_sentences(doc: Any, sentences: list[Sentence]) -> None:
    """Our sentences are ConText's scope; text between them (headers, bullets) is its own.

    A token starts a sentence when a sentence start or end lies between the previous token's
    last character and its own first.
    """
    import numpy as np
    from spacy.attrs import IDX, LENGTH, SENT_START

    bounds = np.array(sorted({s.start for s in sentences} | {s.end for s in sentences}))
    columns = doc.to_array([IDX, LENGTH]).astype(np.int64)
    starts, lengths = columns[:, 0], columns[:, 1]
    last_before = np.concatenate(([-1], starts[:-1] + lengths[:-1] - 1))
    crossed = np.searchsorted(bounds, starts, "right") > np.searchsorted(
        bounds, last_before, "right"
    )
    crossed[0] = True
    doc.from_array([SENT_START], np.where(crossed, 1, -1).astype(np.int64).view(np.uint64)[:, None])


def _cue_ranges(doc: Any, modifiers: list[Any]) -> list[tuple[int, int]]:
    """Character ranges of the cues that are cut out of spans, in text order.

    Modifying cues and terminations are cut ("no symptoms except back pain" -> "symptoms",
    "back pain"); pseudo cues and the cues that belong to a condition's name stay.
    """
    ranges = []
    for modifier in modifiers:
        if modifier.direction == "PSEUDO":
            continue
        cue = _cue_text(doc, modifier)
        if cue in KEEP_INSIDE_CUES or cue in KEEP_INSIDE_TERMINATIONS:
            continue
        start, end = modifier.modifier_span
        ranges.append((doc[start:end].start_char, doc[start:end].end_char))
    return sorted(ranges)


def cut_cues(
    text: str, start: int, end: int, cues: list[tuple[int, int]]
) -> Iterator[tuple[int, int]]:
    """A clause less the ConText cues inside it: "He denies chest pain" -> "chest pain".

    ConText never lets a cue modify a target that contains it, and the condition words are
    what retrieval should see; the cue still sets the flags from outside the span.
    """
    i = bisect_left(cues, (start, -1))
    while i > 0 and cues[i - 1][1] > start:
        i -= 1
    pos = start
    cut = False
    while i < len(cues) and cues[i][0] < end:
        cue_start, cue_end = cues[i]
        i += 1
        if cue_end <= start:
            continue
        cut = True
        if cue_start > pos:
            trimmed = _trim(text, pos, cue_start)
            if trimmed is not None:
                yield trimmed
        pos = max(pos, cue_end)
    if not cut:
        yield start, end
    elif pos < end:
        trimmed = _trim(text, pos, end)
        if trimmed is not None:
            yield trimmed


def _with_section(flags: ContextFlags, section: str) -> ContextFlags:
    if section in FAMILY_SECTIONS and not flags.family:
        flags = flags.model_copy(update={"family": True})
    if section in HYPOTHETICAL_SECTIONS and not flags.hypothetical:
        flags = flags.model_copy(update={"hypothetical": True})
    return flags


def _lines(text: str) -> Iterator[tuple[int, int]]:
    pos = 0
    for line in text.splitlines(keepends=True):
        yield pos, pos + len(line.rstrip("\r\n"))
        pos += len(line)


def _names_section(name: str) -> bool:
    words = name.lower().replace("/", " ").split()
    return len(words) <= MAX_HEADER_WORDS and any(w in HEADER_WORDS for w in words)


def _header(text: str, start: int, end: int) -> tuple[str, int, bool] | None:
    """(section name, where the content after it starts, whether content follows on the line)
    if the line opens a section."""
    line = text[start:end]
    match = _HEADER_RE.match(line)
    if match:
        name = " ".join(match.group(1).split()).lower()
        rest = line[match.end() :].strip()
        if name in SECTION_ALIASES or (not rest and _names_section(name)):
            return normalise_section(name), start + match.end(), bool(rest)
    caps = _CAPS_TITLE_RE.match(line)
    if caps:
        name = " ".join(caps.group(1).split())
        if name.lower() in SECTION_ALIASES or _names_section(name):
            return normalise_section(name), end, False
    return None


def split_sentences(text: str) -> Iterator[Sentence]:
    """Sentences with their section; header text and list bullets are left out."""
    section = ""
    inline_outer: str | None = None  # the section to go back to after an inline header's text
    open_start: int | None = None
    open_end = 0
    open_line = (0, 0)  # the last line added to the open sentence

    def close() -> Iterator[Sentence]:
        nonlocal open_start, section, inline_outer
        if open_start is not None:
            yield from _sentences_in(text, open_start, open_end, section)
        open_start = None
        if inline_outer is not None:
            section, inline_outer = inline_outer, None

    for start, end in _lines(text):
        header = _header(text, start, end)
        if header is not None:
            yield from close()
            outer = section
            section, start, inline = header
            inline_outer = outer if inline else None
        bullet = _BULLET_RE.match(text, start, end)
        if bullet or not text[start:end].strip():
            yield from close()
            if bullet:
                start = bullet.end()
        if not text[start:end].strip():
            continue
        if open_start is not None and _starts_list_line(text, start, open_line):
            yield from close()
        if open_start is None:
            open_start = start
        open_end = end
        open_line = (start, end)
        if text[start:end].rstrip().endswith((".", "!", "?", ":")):
            yield from close()
    yield from close()


#: A line this short that a capitalised line follows is a list item, not a wrapped line.
SHORT_LINE = 50
_CONTINUED_RE = re.compile(r"(?:[,;(/&+-]|\b(?:and|or|with|of|the|to|for|in|on|a|an))$", re.I)


def _starts_list_line(text: str, start: int, previous: tuple[int, int]) -> bool:
    """Whether the line at ``start`` begins a new item after a short unpunctuated line
    ("Kaposi sarcoma" / "COPD") rather than continuing a wrapped one."""
    if not (text[start].isupper() or text[start].isdigit()):
        return False
    line = text[previous[0] : previous[1]].rstrip()
    return len(line) < SHORT_LINE and not _CONTINUED_RE.search(line)


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
    for s, e in _merge_short(text, raw):
        trimmed = _trim(text, s, e)
        if trimmed is not None:
            yield trimmed


def _merge_short(text: str, parts: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Join fragments that cannot stand alone to the clause before them."""
    out: list[tuple[int, int]] = []
    for s, e in parts:
        if out and _joins_previous(text, out[-1], (s, e)):
            out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out


def _joins_previous(text: str, prev: tuple[int, int], cur: tuple[int, int]) -> bool:
    """Whether a fragment continues the clause before it.

    Qualifiers always join ("Hyperlipidemia, unspecified"), as does a comma fragment opening
    with "with"/"without". Across " and " / " or " a one-word clause before a longer one shares
    its head ("breast and ovarian cancer") unless it names a condition itself ("hematuria or
    urinary tract infection"); otherwise fragments stand alone ("fever or cough", "diabetes
    mellitus and hypertension", "fever, cough").
    """
    words = [w.lower() for w in _WORD_RE.findall(text, cur[0], cur[1])]
    if words and all(w in QUALIFIERS for w in words):
        return True
    if words and words[0] in JOINING_OPENERS:
        return True
    if any(c in text[prev[1] : cur[0]] for c in ";:,"):
        return False
    prev_words = _WORD_RE.findall(text, prev[0], prev[1])
    if len(prev_words) == 1 and _CONDITION_NOUN_RE.search(prev_words[0]):
        return False
    return len(prev_words) < MIN_CLAUSE_WORDS <= len(words)


def _trim(text: str, start: int, end: int) -> tuple[int, int] | None:
    """The fragment without edge punctuation, unbalanced brackets and edge function words;
    None if nothing that could name a condition is left."""
    while True:
        before = (start, end)
        while start < end and (text[start] in _TRIM or text[start].isspace()):
            start += 1
        while end > start and (text[end - 1] in _TRIM or text[end - 1].isspace()):
            end -= 1
        lead = _LEADING_RE.match(text, start, end)
        if lead and lead.end() > start:
            start = lead.end()
        trail = _TRAILING_RE.search(text, start, end)
        if trail and trail.start() >= start:
            end = trail.start()
        if (
            start < end
            and text[start] in _BRACKETS
            and text.find(_BRACKETS[text[start]], start + 1, end) < 0
        ):
            start += 1
        if start < end and text[end - 1] in ")]":
            opener = "(" if text[end - 1] == ")" else "["
            if text.rfind(opener, start, end - 1) < 0:
                end -= 1
        if start < end and text[end - 1] in "([":
            end -= 1
        if (start, end) == before:
            break
    if end - start < 2 or not _LETTER_RE.search(text, start, end):
        return None
    if all(w.lower() in STOPWORDS for w in _WORD_RE.findall(text, start, end)):
        return None
    return start, end
