"""Context: ConText over the whole note, our sentences as its scope, and what it marks.

medspaCy's ConText (rules: ``context_rules.py``) finds the cues once per note; their ranges
are cut out of spans (``spans.cut_cues``: modifying cues and terminations go, pseudo cues and
cues that are part of a condition's name stay). Each span is then a ConText target and gets
its flags: negated, hypothetical (uncertain or hypothetical), family, historical. "No history
of X" is negated and historical. A cue strictly inside a span never modifies it, and "without"
right after a condition's words is part of its name and modifies nothing ("diabetes without
complications, hypertension"); after a person, a verb or a comma it negates ("a patient without
known allergies", "evolved without fever"). Section defaults (family history, differential
diagnosis) are added by the caller (``sections.with_section``). A span that states an absence
in one word and nothing more ("painless", "he was afebrile") is negated
(:func:`states_an_absence`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from icdcoder.services.segmenter.context_rules import (
    NOTHING_MORE,
    PERSON_WORDS,
    as_phrases,
    context_rules,
)
from icdcoder.services.segmenter.light_import import import_context
from icdcoder.services.segmenter.sentences import Sentence
from icdcoder.shared.messages import ContextFlags
from icdcoder.shared.text import vocabulary

#: ConText cues that are part of a condition's name in ICD-10-CM's own wording when they follow
#: the condition's words (:func:`_names_a_condition`): then they never split a span ("Type 2
#: diabetes mellitus without complications") and modify no other span ("diabetes without
#: complications, hypertension": the hypertension is not negated).
KEEP_INSIDE_CUES = frozenset({"without"})
#: Terminations that are part of a condition's name too ("secondary hyperparathyroidism",
#: "hypertension secondary to renal artery stenosis", "Still's disease"): never cut.
KEEP_INSIDE_TERMINATIONS = frozenset({"secondary", "secondary to", "still"})
#: Tokens that make a negation cue a history cue too ("no history of nephrolithiasis").
HISTORY_TOKENS = frozenset({"history", "hx", "hist", "h/o"})


@dataclass(frozen=True)
class NoteCues:
    """One note's spaCy doc (our sentences set) and the ConText cues found in it."""

    doc: Any
    modifiers: list[Any]
    #: Character ranges of the cues cut out of spans, in text order.
    ranges: list[tuple[int, int]]


class ConText:
    """medspaCy's ConText with our rules, built once (loading the rules takes a while)."""

    def __init__(self) -> None:
        context = import_context()  # registers the "medspacy_context" factory; imports spaCy
        import spacy

        self._graph_cls: Any = context.ConTextGraph
        self._nlp: Any = spacy.blank("en")
        self._context: Any = cast(
            Any, self._nlp.add_pipe("medspacy_context", config={"rules": None})
        )
        self._context.add(as_phrases(context_rules()))

    def cues(self, text: str, sentences: Sequence[Sentence]) -> NoteCues:
        """ConText's cues in the note, scopes set (matched once; targets come later)."""
        doc = self._nlp.make_doc(text)
        _set_sentences(doc, sentences)
        doc.ents = ()
        doc = self._context(doc)
        modifiers = list(doc._.context_graph.modifiers)
        return NoteCues(doc, modifiers, _cue_ranges(doc, modifiers))

    def flags(self, cues: NoteCues, pieces: list[tuple[int, int]]) -> list[ContextFlags]:
        """Each piece as a ConText target: its flags (no flags if it shares a token)."""
        doc, modifiers = cues.doc, cues.modifiers
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
            and not _names_a_condition(doc, modifier)
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


#: Words that state an absence by themselves: "painless", "afebrile", "non-tender".
ABSENCE_WORDS = vocabulary(
    """
    painless afebrile apyretic asymptomatic nontender non-tender non-painful nonpainful
    pain-free painfree symptom-free symptomless
    """
)
#: Words a span may hold beside them and still say nothing more ("the patient was afebrile").
_ABSENCE_FILLER = vocabulary(
    """
    the a an patient he she was is were remained remains and or clinically status state
    completely totally
    """
)
_WORD = re.compile(r"[a-z]+(?:-[a-z]+)*", re.I)


def states_an_absence(text: str) -> bool:
    """True when the span says, in one word, that a finding is absent, and nothing else
    ("painless", "The patient was afebrile"); a finding written beside it ("non-painful
    hepatomegaly", "painless jaundice") is more than that."""
    words = [w.lower() for w in _WORD.findall(text)]
    return any(w in ABSENCE_WORDS for w in words) and all(
        w in ABSENCE_WORDS or w in _ABSENCE_FILLER for w in words
    )


def _cue_text(doc: Any, modifier: Any) -> str:
    """A cue's words, lower-cased."""
    start, end = modifier.modifier_span
    return str(doc[start:end].text.lower())


def _names_a_condition(doc: Any, modifier: Any) -> bool:
    """Whether a :data:`KEEP_INSIDE_CUES` cue is part of a condition's name: it follows a word of
    its sentence that is not a person, a verb form or an adverb ("diabetes mellitus without
    complications", not "patient, without known allergies" or "evolved favourably without
    fever")."""
    if _cue_text(doc, modifier) not in KEEP_INSIDE_CUES:
        return False
    start = modifier.modifier_span[0]
    if start == 0 or doc[start].is_sent_start:
        return False
    before = doc[start - 1]
    word = before.lower_
    return before.is_alpha and word not in PERSON_WORDS and not word.endswith(("ed", "ing", "ly"))


def _mentions_history(doc: Any, modifier: Any) -> bool:
    """Whether a cue speaks of history ("no history of")."""
    start, end = modifier.modifier_span
    return any(token.lower_ in HISTORY_TOKENS for token in doc[start:end])


def _set_sentences(doc: Any, sentences: Sequence[Sentence]) -> None:
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
    "back pain"), as are the pseudo cues of an empty history ("with no history of interest")
    and of a patient free of disease ("she remains disease free"), which say all there is to
    say; other pseudo cues and the cues that belong to a condition's name stay.
    """
    ranges = []
    for modifier in modifiers:
        if modifier.direction == "PSEUDO" and modifier.category != NOTHING_MORE:
            continue
        if (
            _names_a_condition(doc, modifier)
            or _cue_text(doc, modifier) in KEEP_INSIDE_TERMINATIONS
        ):
            continue
        start, end = modifier.modifier_span
        ranges.append((doc[start:end].start_char, doc[start:end].end_char))
    return sorted(ranges)
