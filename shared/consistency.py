"""Whether a code fits the patient the note describes: sex-specific and pregnancy codes.

A code for the other sex's organs (prostate for a woman, ovary for a man) or a pregnancy code
in a note that never mentions a pregnancy is almost always a retrieval slip: the span's words
matched, the patient did not. :func:`inconsistency` names the mismatch; the aggregator sends
such a code to review with that reason instead of asserting it.

The sex-specific ranges follow the CMS Medicare Code Editor's sex edits at category level, a
deliberate approximation: a few categories hold codes for both sexes and are left out. The
patient's sex is the first one the note names (case reports and admission notes introduce the
patient first), unknown when it names none.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Sex = Literal["female", "male"]

#: Category ranges (first 3 characters, inclusive) whose codes apply to one sex only.
_FEMALE_RANGES = (
    ("C51", "C58"),  # malignant neoplasms of female genital organs
    ("D06", "D06"),  # carcinoma in situ of cervix uteri
    ("D25", "D28"),  # benign neoplasms of uterus, ovary, other female genital organs
    ("N70", "N98"),  # diseases of female pelvic organs and genital tract
    ("O00", "O9A"),  # pregnancy, childbirth and the puerperium
    ("Q50", "Q52"),  # malformations of female genital organs
    ("Z32", "Z37"),  # pregnancy test, pregnant state, supervision, screening, delivery outcome
    ("Z3A", "Z3A"),  # weeks of gestation
)
_MALE_RANGES = (
    ("C60", "C63"),  # malignant neoplasms of male genital organs
    ("D29", "D29"),  # benign neoplasms of male genital organs
    ("N40", "N53"),  # diseases of male genital organs
    ("Q53", "Q55"),  # malformations of male genital organs
)
#: Codes that need a pregnancy, a delivery or the puerperium in the note.
_PREGNANCY_RANGES = (("O00", "O9A"), ("Z33", "Z37"), ("Z3A", "Z3A"))

_SEX_WORDS = re.compile(
    r"\b(?:(?P<female>woman|female|girl|lady|mrs)|(?P<male>man|male|boy|gentleman|mr))\b", re.I
)
_PREGNANCY_WORDS = re.compile(
    r"\b(?:pregnan\w*|gestation\w*|gravid\w*|obstetric\w*|deliver(?:y|ies|ed)|childbirth"
    r"|labou?r|post-?partum|puerper\w*|c(?:a)?esarean|trimester|abortion|miscarriage"
    r"|prenatal|antenatal|ectopic|placenta\w*|fetus|fetal|foetus|foetal|amenorrh\w*"
    r"|primipar\w*|multipar\w*|nullipar\w*|parturi\w*)\b",
    re.I,
)


@dataclass(frozen=True)
class NoteFacts:
    """What the note says about its patient, as far as the checks need it."""

    sex: Sex | None
    pregnancy: bool


def read_facts(text: str) -> NoteFacts:
    """The patient's sex, from the first word naming one ("a 38-year-old man", "female
    patient"; None when no word does), and whether the note mentions a pregnancy, a delivery
    or the puerperium. Pronouns are not read: machine translations from languages that drop
    the subject guess them ("A 38-year-old male ... She was under antibiotic treatment")."""
    first = _SEX_WORDS.search(text)
    sex: Sex | None = None
    if first is not None:
        sex = "female" if first.group("female") else "male"
    return NoteFacts(sex=sex, pregnancy=_PREGNANCY_WORDS.search(text) is not None)


def _in(code: str, ranges: tuple[tuple[str, str], ...]) -> bool:
    category = code.upper()[:3]
    return any(low <= category <= high for low, high in ranges)


def code_sex(code: str) -> Sex | None:
    """The sex a code applies to, or None when it applies to both."""
    if _in(code, _FEMALE_RANGES):
        return "female"
    if _in(code, _MALE_RANGES):
        return "male"
    return None


def inconsistency(code: str, facts: NoteFacts) -> str | None:
    """Why the code does not fit the note's patient, or None when nothing says it does not."""
    if _in(code, _PREGNANCY_RANGES) and not facts.pregnancy:
        return "a pregnancy code, and the note mentions no pregnancy, delivery or puerperium"
    needs = code_sex(code)
    if needs is not None and facts.sex is not None and needs != facts.sex:
        return f"a code for {needs} patients, and the note describes a {facts.sex} patient"
    return None
