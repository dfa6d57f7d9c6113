"""Words shared between a span and a code's text: the verifier's overlap features.

A catalogue text's *content words* leave out function words and the catalogue's own filler
("unspecified", "other", "type"); words are compared by a crude prefix stem so that
"calculi" meets "calculus", and a note's "renal lithiasis" the title's "calculus of kidney".
"""

from __future__ import annotations

import re
from functools import lru_cache

_WORD_RE = re.compile(r"[a-z0-9]+")

#: Bones with a neck or a head of their own, as a note names them ("femoral neck", "head of
#: the humerus") and as the titles do ("neck of right femur"), with the noun a title uses.
_BONES = {
    "femoral": "femur",
    "femur": "femur",
    "humeral": "humerus",
    "humerus": "humerus",
    "radial": "radius",
    "radius": "radius",
    "fibular": "fibula",
    "fibula": "fibula",
    "talar": "talus",
    "talus": "talus",
    "mandibular": "mandible",
    "mandible": "mandible",
}
_BONE = "|".join(_BONES)
#: Such a bone's neck or head is part of the bone, not the neck or head region that a title
#: such as S12.9 "Fracture of neck" (the cervical spine) asks for (the Alphabetic Index:
#: Fracture, femur, neck -> S72.0-; Fracture, neck -> see Fracture, vertebra, cervical).
_PART_OF_A_BONE = re.compile(
    rf"\b(?P<adjective>{_BONE}) (?:neck|head)s?\b"
    rf"|\b(?:neck|head)s? of (?:the )?(?P<side>(?:left|right) )?(?P<noun>{_BONE})\b"
)


def as_bones(text: str) -> str:
    """``text`` (in lower case) with a bone's neck or head written as the bone: "the right
    femoral neck" -> "the right femur", "neck of left femur" -> "left femur"."""
    return _PART_OF_A_BONE.sub(_the_bone, text)


def _the_bone(match: re.Match[str]) -> str:
    bone = match.group("adjective") or match.group("noun")
    return f"{match.group('side') or ''}{_BONES[bone]}"


#: Words that carry no condition: function words and the catalogue's filler.
FILLER_WORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "for",
        "from",
        "has",
        "have",
        "in",
        "is",
        "it",
        "of",
        "on",
        "or",
        "the",
        "to",
        "was",
        "were",
        "with",
        "without",
        "which",
        "who",
        "whom",
        "this",
        "that",
        "these",
        "those",
        "his",
        "her",
        "their",
        "its",
        "patient",
        "pt",
        "unspecified",
        "other",
        "nos",
        "not",
        "elsewhere",
        "classified",
        "site",
        "specified",
        "type",
        "due",
        "than",
        "into",
    ]
)
#: Words too generic to count as evidence on their own.
WEAK_WORDS = frozenset(["disease", "disorder", "condition", "syndrome"])


def vocabulary(words: str) -> frozenset[str]:
    """A set of words written as one whitespace-separated string (word lists read best so)."""
    return frozenset(words.split())


def content_words(text: str) -> list[str]:
    return list(_content_words(text))


# The same span and catalogue texts are compared many times per note (and across notes): these
# pure functions of one string are cached.
@lru_cache(maxsize=1 << 16)
def _content_words(text: str) -> tuple[str, ...]:
    text = as_bones(spelled_out(text).lower())
    return tuple(w for w in _WORD_RE.findall(text) if w not in FILLER_WORDS)


#: A condition's or organism's abbreviation, in capitals, and what a title calls it.
_ABBREVIATIONS = {
    "DM": "diabetes mellitus",
    "COPD": "chronic obstructive pulmonary disease",
    "AF": "atrial fibrillation",
    "CKD": "chronic kidney disease",
    "UTI": "urinary tract infection",
    "HTN": "hypertension",
    "AMI": "acute myocardial infarction",
    "CHF": "congestive heart failure",
    "DVT": "deep vein thrombosis",
    "HCV": "hepatitis C virus",
    "HBV": "hepatitis B virus",
    "CMV": "cytomegalovirus",
    "EBV": "Epstein-Barr virus",
}
_ABBREVIATION_RE = re.compile(rf"\b(?:{'|'.join(_ABBREVIATIONS)})\b")


def spelled_out(text: str) -> str:
    """The text with a condition's abbreviation spelled out ("DM" -> "diabetes mellitus")."""
    return _ABBREVIATION_RE.sub(lambda match: _ABBREVIATIONS[match.group()], text)


#: Endings taken off before the prefix is cut, longest first: inflection and the suffixes
#: that turn a condition into its adjective ("hypertrophy"/"hypertrophic").
_ENDINGS = tuple(
    sorted(
        vocabulary("ically ical ics ic ies ia ias y es s al ous ive ion ions i us um a e"),
        key=len,
        reverse=True,
    )
)
#: British spellings written the US way: "haemorrhage", "oedema", "diarrhoea".
_BRITISH_RE = re.compile(r"ae|oe(?!$)")
#: Characters kept: six at least, twelve at most ("hypercholesterolaemia" meets its US
#: spelling).
_STEM_MIN, _STEM_MAX = 6, 12


#: A note's adjective or Greek name for what a title calls by its English noun: "renal
#: lithiasis" says "kidney calculus" (N20.0), "hepatic" "liver".
_SAME_AS = dict(
    pair.split("=")
    for pair in vocabulary(
        """renal=kidney hepatic=liver pulmonary=lung cardiac=heart gastric=stomach
        cerebral=brain cerebellar=cerebellum ocular=eye cutaneous=skin splenic=spleen
        osseous=bone ovarian=ovary uterine=uterus vaginal=vagina testicular=testis
        testicle=testis testicles=testis prostatic=prostate vesical=bladder urethral=urethra
        ureteral=ureter esophageal=esophagus colonic=colon rectal=rectum anal=anus
        pancreatic=pancreas pleural=pleura pericardial=pericardium peritoneal=peritoneum
        aortic=aorta venous=vein muscular=muscle articular=joint abdominal=abdomen
        thoracic=thorax pelvic=pelvis vertebral=vertebra femoral=femur humeral=humerus
        tibial=tibia fibular=fibula ulnar=ulna nasal=nose lingual=tongue dental=tooth
        mammary=breast lithiasis=calculus stone=calculus stones=calculus neoplasia=neoplasm
        neoplastic=neoplasm tumour=tumor cephalea=headache cephalalgia=headache
        febrile=fever pyrexia=fever emesis=vomiting ii=2 iii=3"""
    )
)


@lru_cache(maxsize=1 << 16)
def stem(word: str) -> str:
    """A crude stem: the word less its ending, cut to twelve characters, so
    'calculi'/'calculus' and 'hypertension'/'hypertensive' meet, and
    'hypercholesterolemia'/'hyperchylomicronemia' (a six-character prefix) do not; 'ae' and
    'oe' are read as 'e' ('hyperglycaemia', 'oedema'), and an organ's adjective as its noun
    ('renal' is 'kidney', 'lithiasis' 'calculus')."""
    word = _BRITISH_RE.sub("e", _SAME_AS.get(word, word))
    if len(word) <= _STEM_MIN:
        return word
    for ending in _ENDINGS:
        if word.endswith(ending) and len(word) - len(ending) >= _STEM_MIN:
            word = word[: -len(ending)]
            break
    return word[:_STEM_MAX]


@lru_cache(maxsize=1 << 16)
def stems(text: str) -> frozenset[str]:
    return frozenset(stem(w) for w in _content_words(text))


@lru_cache(maxsize=1 << 16)
def _strong_stems(code_text: str) -> frozenset[str]:
    return frozenset(stem(w) for w in _content_words(code_text) if w not in WEAK_WORDS)


def shared_words(span_text: str, code_text: str) -> list[str]:
    """Content words of ``span_text`` that also occur (by stem) in ``code_text``, in span order."""
    code_stems = stems(code_text)
    seen: dict[str, None] = {}
    for word in content_words(span_text):
        if stem(word) in code_stems:
            seen.setdefault(word)
    return list(seen)


def stem_coverage(text_stems: frozenset[str], code_text: str) -> float:
    """Share of the code text's content words (by stem, weak words aside) among ``text_stems``."""
    code = _strong_stems(code_text)
    if not code:
        return 0.0
    return len(code & text_stems) / len(code)


def coverage(span_text: str, code_text: str) -> float:
    """Share of the code text's content words (by stem) that the span contains."""
    return stem_coverage(stems(span_text), code_text)


_LETTERS_RE = re.compile(r"[A-Za-z]+")


def in_title_words(text: str) -> str | None:
    """The text with a note's organ adjectives, Greek names and abbreviations written as the
    titles' words ("left renal lithiasis" -> "left kidney calculus", "DM" -> "diabetes
    mellitus"), or None when it has none."""
    written = _LETTERS_RE.sub(
        lambda match: _SAME_AS.get(match.group().lower(), match.group()), spelled_out(text)
    )
    return None if written == text else written
