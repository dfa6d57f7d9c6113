"""Sections: which lines are headers, and the section name each later line belongs to.

A header line opens a section: a known spelling (``SECTION_ALIASES``: "Past Medical History:",
"DISCHARGE DIAGNOSES", "Family history: mother with ...") or, with nothing after its colon or
in capitals, a short title with a section word in it (``HEADER_WORDS``: "Neurological
examination:"); a lone "HIV seropositive:" or "COPD" is not one. The name is normalised
("past_medical_history"); an unknown title becomes its own snake_case name. A header with its
content on the same line covers that line only (with any line wrapped onto it); the section
before it resumes after (``sentences.py`` applies that).

What a section means downstream is decided here too: medication, administrative and
instruction sections yield no spans (``SKIPPED_SECTIONS``), a span in the family-history
section is family and one in a differential-diagnosis section hypothetical (``with_section``).
"""

from __future__ import annotations

import re

from icdcoder.shared.messages import ContextFlags


def _words(words: str) -> list[str]:
    return words.split()


#: A header line: (section name, where the content after it starts, whether content follows
#: on the same line).
Header = tuple[str, int, bool]

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


def normalise_section(header: str) -> str:
    """``Past Medical History`` -> ``past_medical_history``: an alias, else snake_case."""
    key = " ".join(header.lower().replace("_", " ").split())
    return SECTION_ALIASES.get(key) or re.sub(r"[^a-z0-9]+", "_", key).strip("_")


def _names_section(name: str) -> bool:
    words = name.lower().replace("/", " ").split()
    return len(words) <= MAX_HEADER_WORDS and any(w in HEADER_WORDS for w in words)


def line_header(text: str, start: int, end: int) -> Header | None:
    """The :data:`Header` of the line ``text[start:end]`` if it opens a section, else None."""
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


def with_section(flags: ContextFlags, section: str) -> ContextFlags:
    """A span's ConText flags with what its section implies (family, hypothetical) added."""
    if section in FAMILY_SECTIONS and not flags.family:
        flags = flags.model_copy(update={"family": True})
    if section in HYPOTHETICAL_SECTIONS and not flags.hypothetical:
        flags = flags.model_copy(update={"hypothetical": True})
    return flags
