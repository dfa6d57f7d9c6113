"""Spans: the pieces of a sentence that may name one condition each, with exact offsets.

A sentence is split into clauses and list items at ";", ":", ", ", and at " and " / " or " /
relative pronouns / "showed" / "compatible with" between clauses ("with" and "due to" never
split: "diabetes with nephropathy" is one condition), and fragments that cannot stand alone
join the clause before them ("Hyperlipidemia, unspecified", "breast and ovarian cancer").
ConText cues are then cut out of a clause ("He denies chest pain" -> "chest pain"; the cues
themselves come from ``context.py``), and every piece is trimmed of bullets, punctuation,
unbalanced brackets and leading/trailing function words. A piece with nothing that could name
a condition is dropped. Offsets only: the caller slices ``text[start:end]``.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Iterator


def _words(words: str) -> list[str]:
    return words.split()


#: Words between two conditions, or between a test and its finding: "a CT showed Y", "Y
#: compatible with Z" name two things, each searched alone. "X due to Y" stays one span: it may
#: name one combination code ("hypertension secondary to renal artery stenosis" is I15.0), and
#: the retriever searches its phrases too (``shared/context.phrases``).
_BETWEEN_CONDITIONS = (
    "and|or|but|whereas|although|which|who|following|after"
    "|appears?|appeared|showed|shows|revealed|presented|presenting|persistence of"
    "|compatible with|suggestive of|consistent with"
)
_CLAUSE_SPLIT_RE = re.compile(
    rf"\s*[;:]\s*|,\s+(?:and\s+|or\s+|but\s+)?|\s+(?:{_BETWEEN_CONDITIONS})\s+",
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
#: Words that tell when or in what order, never what: a span of only these and
#: :data:`STOPWORDS` is dropped too ("Subsequently", "respectively", "one month later",
#: "on admission", "on the other hand"): 2.6% of the spans searched on CodiEsp train and dev.
TIME_AND_DISCOURSE = frozenset(
    _words("""subsequently respectively finally therefore initially likewise later after afterwards
    before thereafter meanwhile moreover furthermore however additionally addition thus hence
    currently previously recently again once twice now today yesterday ago
    time times moment day days week weeks month months year years hour hours minute minutes
    night nights morning evening one two three four five six seven eight nine ten first
    second third several few during upon admission arrival reason hand""")
)
#: Verbs, modals and connectives of a report's narrative, and words that speak of care without
#: naming a condition: a span of only these (with the words above) is dropped too ("Despite",
#: "could", "found", "clinical diagnosis") instead of drawing codes by chance.
NARRATIVE = frozenset(
    _words("""could would should might may can cannot must will despite due similar because why
    found observed performed detected decided given described removed reported report noted
    seen showed shown done carried clinical clinically medical
    diagnosis diagnostic treatment treated problem""")
)
_NAMES_NOTHING = STOPWORDS | TIME_AND_DISCOURSE | NARRATIVE

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


def split_clauses(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    """Clause offsets inside a sentence, trimmed; fragments without words are dropped."""
    pos = start
    raw: list[tuple[int, int]] = []
    for match in _CLAUSE_SPLIT_RE.finditer(text, start, end):
        raw.append((pos, match.start()))
        pos = match.end()
    raw.append((pos, end))
    for s, e in _merge_short(text, raw):
        trimmed = trim(text, s, e)
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
    if text[prev[1] : cur[0]].strip().lower() not in ("and", "or"):
        return False
    prev_words = _WORD_RE.findall(text, prev[0], prev[1])
    if len(prev_words) == 1 and _CONDITION_NOUN_RE.search(prev_words[0]):
        return False
    return len(prev_words) < MIN_CLAUSE_WORDS <= len(words)


def trim(text: str, start: int, end: int) -> tuple[int, int] | None:
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
    if all(w.lower() in _NAMES_NOTHING for w in _WORD_RE.findall(text, start, end)):
        return None
    return start, end


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
            trimmed = trim(text, pos, cue_start)
            if trimmed is not None:
                yield trimmed
        pos = max(pos, cue_end)
    if not cut:
        yield start, end
    elif pos < end:
        trimmed = trim(text, pos, end)
        if trimmed is not None:
            yield trimmed
