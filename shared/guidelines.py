"""Rules of the ICD-10-CM Official Guidelines for Coding and Reporting that the aggregator
applies to a note's codes, as pure functions over codes and text.

- *The title the note states* (:func:`states_title`): a diagnosis written word for word as a
  code's title ("Type 2 diabetes mellitus without complications") is that code; a sibling of
  its category on the same words ("with unspecified complications") is not (I.A.15, I.B.1).
- *Signs and symptoms* (:func:`explains_symptom`): a chapter-R code routinely associated with
  a definitive diagnosis is not coded beside it (I.B.4, I.B.5). Which symptoms a diagnosis
  explains is approximated by body system: the blocks of chapter R name the system their
  symptoms belong to (R00-R09 "circulatory and respiratory systems"), and a diagnosis of that
  system's chapter may explain them; or by place: the symptom is written in the sentence that
  states the diagnosis ("fever due to pneumonia").
- *Injuries* (:func:`trauma_wording`): the injury chapter (S00-T88: injuries, poisonings,
  effects of external causes, complications of care) is for conditions an external cause
  produced; its codes need wording of one ("acute kidney injury" is N17.9, not S37).
- *A test or procedure is not a diagnosis* (:func:`names_test_or_procedure`): "chest X-ray",
  "abdominal ultrasound", "bone scintigraphy" name what was done, not what was found; a
  diagnosis code on such words alone ("chest pain" on "chest X-ray") is a retrieval slip.
- *"With"* (:func:`combinations`): the guidelines presume a causal link between hypertension
  and heart failure or chronic kidney disease, and between diabetes and chronic kidney disease
  (I.A.15, I.C.9.a, I.C.4.a), so the combination code is proposed when both are coded.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache

from icdcoder.shared.text import as_bones, stem, vocabulary

# ---------------------------------------------------------------- the title the note states

_PARENTHESES = re.compile(r"\([^)]*\)")
_UNSPECIFIED = re.compile(r",?\s*unspecified\b", re.I)
_NON_WORD = re.compile(r"[^a-z0-9]+")


def _words(text: str) -> str:
    return _NON_WORD.sub(" ", text.lower()).strip()


def title_forms(title: str) -> set[str]:
    """A catalogue title as a note may write it: whole, without its parenthesised
    non-essential words ("Essential (primary) hypertension"), without ", unspecified"."""
    forms = {title, _PARENTHESES.sub(" ", title)}
    forms |= {_UNSPECIFIED.sub(" ", form) for form in forms}
    return {w for w in map(_words, forms) if w}


def states_title(evidence: str, titles: Iterable[str]) -> bool:
    """True when the evidence is, word for word, one of the titles (a code's description or
    inclusion terms), punctuation and case aside."""
    said = _words(evidence)
    return bool(said) and any(said in title_forms(title) for title in titles)


# ---------------------------------------------------------------- documented specificity

#: What a title asks for nothing by: "unspecified", "uncomplicated", and clauses of absence
#: ("without complications", "not intractable"); parenthesised words are non-essential.
_DEFAULT_WORDING = re.compile(
    r"\b(?:without|not)\b[^,;]*|\b(?:unspecified|uncomplicated|nos)\b", re.I
)
_FUNCTION_WORDS = frozenset(
    "a an and are as at be by for from in into is of on or the to with due".split()  # noqa: SIM905
)


@lru_cache(maxsize=1 << 16)
def asked_words(title: str) -> tuple[str, ...]:
    """The words a code's title asks the documentation for, in title order, once each.
    Non-essential (parenthesised) words, "unspecified" and clauses of absence ask for nothing,
    so E11.9 asks for "type 2 diabetes mellitus" only."""
    core = _DEFAULT_WORDING.sub(" ", _PARENTHESES.sub(" ", title))
    return tuple(dict.fromkeys(w for w in _stated_words(core) if w not in _FUNCTION_WORDS))


def _stated_words(text: str) -> list[str]:
    """The words of ``text``, a bone's neck or head written as the bone ("femoral neck" ->
    "femur"), so that neither says the neck region (:func:`~icdcoder.shared.text.as_bones`)."""
    return as_bones(_words(text)).split()


def undocumented(title: str, said: str) -> list[str]:
    """The words of a code's title that ``said`` does not state, in title order: what the code
    asserts beyond the documentation ("hyperglycemia" for E11.65 on "type 2 diabetes
    mellitus"; "other" for J45.998 on "asthma"; "neck" for S12.9 on "femoral neck")."""
    stated = {stem(w) for w in _stated_words(said)}
    return [w for w in asked_words(title) if stem(w) not in stated]


def said_stems(text: str) -> frozenset[str]:
    """The stems of every word of ``text``, filler included (a bone's neck or head as the bone):
    what :func:`documented_share` looks for a title's words among."""
    return frozenset(stem(w) for w in _stated_words(text))


def documented_share(title: str, stated: frozenset[str]) -> float:
    """The share of the words ``title`` asks for (:func:`asked_words`) whose stems are among
    ``stated`` (:func:`said_stems` of a note); 1.0 when it asks for none."""
    asked = _asked_stems(title)
    if not asked:
        return 1.0
    return sum(s in stated for s in asked) / len(asked)


def path_documented_share(path: str, stated: frozenset[str]) -> float:
    """:func:`documented_share` of an Alphabetic Index term path ("Hernia, hernial, hiatal"),
    whose main term lists its variants ("hernial", "hypertensive"): a word that is an earlier
    one but for its last two letters or fewer asks for nothing more."""
    asked = _path_stems(path)
    if not asked:
        return 1.0
    return sum(s in stated for s in asked) / len(asked)


@lru_cache(maxsize=1 << 16)
def _path_stems(path: str) -> tuple[str, ...]:
    kept: list[str] = []
    for word in asked_words(path):
        if not any(_variants(word, other) for other in kept):
            kept.append(word)
    return tuple(stem(w) for w in kept)


def _variants(word: str, other: str) -> bool:
    """Whether two words are one term's variants: "hernia" and "hernial", "anemia" and
    "anemic"; not "hypertension" and "hypertrophy"."""
    if word[:5] != other[:5]:
        return False
    shorter = min(len(word), len(other))
    common = next((i for i in range(5, shorter) if word[i] != other[i]), shorter)
    return common >= 5 and common >= shorter - 2


@lru_cache(maxsize=1 << 16)
def _asked_stems(title: str) -> tuple[str, ...]:
    """The stems of :func:`asked_words` (a note asks this of each of its hundreds of codes)."""
    return tuple(stem(w) for w in asked_words(title))


# ---------------------------------------------------------------- signs and symptoms

#: Chapter-R blocks whose symptoms belong to a body system, and the chapters (first letter
#: of the code, or a code prefix) holding that system's diagnoses. Blocks of general
#: symptoms (R50-R69: fever, oedema, pain, fatigue), abnormal laboratory and imaging
#: findings (R70-R79, R83-R94) have no system: only the sentence criterion applies.
_SYSTEMS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("R00", "R09", "circulatory or respiratory", ("I", "J")),
    ("R10", "R19", "digestive", ("K",)),
    ("R20", "R23", "skin", ("L",)),
    ("R25", "R29", "nervous or musculoskeletal", ("G", "M")),
    ("R30", "R39", "urinary", ("N",)),
    ("R40", "R46", "nervous or mental", ("F", "G")),
    ("R47", "R49", "nervous or mental", ("F", "G")),
    ("R80", "R82", "urinary", ("N",)),
)


def is_symptom(code: str) -> bool:
    """A chapter-R code: symptoms, signs and abnormal findings."""
    return code.upper().startswith("R")


def is_definitive(code: str) -> bool:
    """A diagnosis that may explain a symptom: not a symptom, a factor influencing health
    status (Z) or an external cause (V-Y)."""
    return code[:1].upper() not in {"R", "Z", "V", "W", "X", "Y"}


def symptom_system(code: str) -> tuple[str, tuple[str, ...]] | None:
    """The body system of a chapter-R code's block and the chapters of its diagnoses."""
    category = code.upper()[:3]
    for low, high, name, chapters in _SYSTEMS:
        if low <= category <= high:
            return name, chapters
    return None


def same_system(symptom: str, diagnosis: str) -> bool:
    """True when the diagnosis is of the body system the symptom's block names."""
    system = symptom_system(symptom)
    return system is not None and diagnosis.upper().startswith(system[1])


SymptomCriterion = str  # "off" | "system" | "sentence" | "both" | "either"


def explains_symptom(
    symptom: str,
    diagnosis: str,
    *,
    shared_sentence: bool,
    criterion: SymptomCriterion = "system",
) -> str | None:
    """Why the accepted ``diagnosis`` may explain the chapter-R ``symptom`` (None when,
    under the criterion, it does not): same body system, written in one sentence
    (``shared_sentence``: some sentence holds evidence of both), both, or either."""
    if criterion == "off" or not is_symptom(symptom) or not is_definitive(diagnosis):
        return None
    if criterion == "both":
        if not (shared_sentence and same_system(symptom, diagnosis)):
            return None
        name = symptom_system(symptom)
        assert name is not None
        return f"a {name[0]} symptom in the sentence that states {diagnosis}, of that system"
    if criterion in ("system", "either") and same_system(symptom, diagnosis):
        name = symptom_system(symptom)
        assert name is not None
        return f"a {name[0]} symptom beside {diagnosis}, a diagnosis of that system"
    if criterion in ("sentence", "either") and shared_sentence:
        return f"a symptom in the sentence that states {diagnosis}"
    return None


# ---------------------------------------------------------------- injuries

#: Conditions named "injury" that no external cause produced.
_NON_TRAUMATIC = re.compile(
    r"\b(?:acute|chronic|ischemic|ischaemic|hypoxic|reperfusion|drug[- ]induced)?\s*"
    r"(?:kidney|renal|lung|liver|hepatic|hepatocellular|myocardial|tubular|cerebral|brain)"
    r"\s+(?:cell\s+)?injur(?:y|ies)\b",
    re.I,
)
_TRAUMA = re.compile(
    r"\b(?:trauma\w*|injur\w*|fractur\w*|fell|falls?|falling|accident\w*|wound\w*|lacerat\w*"
    r"|contusion\w*|bruis\w*|sprain\w*|strain\w*|dislocat\w*|luxat\w*|subluxat\w*|burn\w*"
    r"|scald\w*|bite|bitten|sting\w*|stung|collision|crash\w*|struck|hit|blow|assault\w*"
    r"|gunshot|shot|stab\w*|cut|crush\w*|amputat\w*|avulsion|rupture\w*|tear|torn|foreign"
    r"|poison\w*|overdose\w*|intoxicat\w*|toxicity|toxic|ingest\w*|envenom\w*|exposure"
    r"|adverse|induced|reaction\w*|allerg\w*|anaphyla\w*|complicat\w*|post-?operative\w*"
    r"|postoperativ\w*|post-?surgical|post-?procedural|surgery|surgical|operation|rejection"
    r"|transplant\w*|graft\w*|prosthe\w*|implant\w*|catheter\w*|stent\w*|shunt\w*|device\w*"
    r"|pacemaker|frostbite|hypotherm\w*|heat|drown\w*|asphyxia\w*|suffocat\w*|abuse\w*"
    r"|maltreat\w*|violence|whiplash|concussion|hematoma|haematoma|traumatic)\b",
    re.I,
)


def is_injury_chapter(code: str) -> bool:
    """Chapter 19: injury, poisoning and certain other consequences of external causes."""
    return code[:1].upper() in {"S", "T"}


def trauma_wording(text: str) -> bool:
    """True when the text names an external cause or its result (a fall, a fracture, a
    poisoning, a complication of care), organ "injuries" of disease left aside."""
    return _TRAUMA.search(_NON_TRAUMATIC.sub(" ", text)) is not None


# ---------------------------------------------------------------- tests and procedures

_TEST_OR_PROCEDURE = (
    r"(?:ultrasound|ultrasonography|sonography|echography|x-?rays?|radiographs?|radiography"
    r"|tomography|ct|scans?|mri|resonance|imaging|echocardiogram|echocardiography"
    r"|electrocardiogram|ecg|ekg|eeg|emg|angiography|angiogram|biops(?:y|ies)"
    r"|\w+scopy|\w+graphy|\w+ectomy|\w+otomy|\w+ostomy|\w+plasty|\w+centesis"
    r"|surgery|operation|resection|excision|puncture|analysis|analytics?|tests?|cultures?"
    r"|serology|count|levels?|study|studies|examination|exam|assay|smear|staining|profile"
    r"|panel|urinalysis|sediment|ana?esthesia|analgesia|sedation"
    # laboratory analytes: "hemoglobin 9.8 g/dl" is a measurement, not hemoglobinuria
    r"|ha?emoglobin|ha?ematocrit|leu[ck]ocytes?|platelets?|creatinine|glucose|sodium|potassium"
    r"|urea|bilirubin|albumin|ferritin|c-reactive protein|crp|esr|sedimentation rate"
    r"|hormones?|cholesterols?|triglycerides|transaminases|lactate|ammonia|psa|markers)"
)
#: The test's abbreviation after its name: "magnetic resonance imaging (MRI)".
_ABBREVIATION = r"(?:\s*\([\w-]{2,8}\))?"
#: A measured value after an analyte or test: "9.8 g/dl", "of 35.3%", ": 120 mg/dL".
_VALUE = r"(?:\s*(?:of|:|=)?\s*[<>]?\s*\d[\d.,]*\s*(?:%|[a-z\u00b5/]+(?:/[a-z0-9]+)?)?)?"
#: Up to three words before a test or procedure noun, and nothing after it but a value.
_NAMES_TEST = re.compile(
    rf"^(?:[\w/-]+\s+){{0,3}}{_TEST_OR_PROCEDURE}{_ABBREVIATION}{_VALUE}\.?$", re.I
)


def names_test_or_procedure(text: str) -> bool:
    """True when the text only names a test, a procedure or a measurement ("chest X-ray",
    "normal brain CT scan", "Lumbar puncture", "general anesthesia", "hemoglobin 9.8 g/dl"):
    at most four words, the last a test, procedure or analyte noun, then at most a value. A
    finding written with it ("X-ray showed a fracture") is more than a name."""
    return _NAMES_TEST.match(" ".join(text.split())) is not None


#: Words that describe who the patient is and nothing of their health: age, sex, a person,
#: and the words case reports introduce them with ("We report the case of a 76-year-old man").
_PATIENT_WORDS = vocabulary(
    """
    a an the of at to and with this is was we our report reported present presented
    describe case cases patient patients man men woman women male female boy girl child
    children infant newborn baby adolescent adult he she his her aged age ages old year
    years month months week weeks day days y yo when until since from
    one two three four five six seven eight nine ten eleven twelve
    """
)
_TOKEN = re.compile(r"[a-z]+|\d+", re.I)


def describes_only_the_patient(text: str) -> bool:
    """True when the text says who the patient is (age, sex) and nothing of their health:
    "30 years old", "a 64-year-old male patient", "We report the case of a 76-year-old man"."""
    tokens = [t.lower() for t in _TOKEN.findall(text)]
    return bool(tokens) and all(t.isdigit() or t in _PATIENT_WORDS for t in tokens)


#: Anaesthesia given for a procedure: "under local anesthesia", "general anesthesia was
#: performed", "the anesthesiologist", and pain relief given ("required continuous analgesia",
#: "analgesic radiotherapy"). Not the finding R20.0, anaesthesia (numbness) of skin, which the
#: Alphabetic Index also gives for "Analgesia".
_PROCEDURAL_ANESTHESIA = re.compile(
    r"\bunder\s+(?:[\w-]+\s+){0,2}(?:ana?esthesia|sedation)\b"
    r"|\b(?:general|local|spinal|epidural|regional|locoregional|topical|intravenous|deep)"
    r"\s+(?:ana?esthesia|sedation)\b|\bana?esthe(?:siologist|tist)s?\b"
    r"|\banalges(?:ia|ic|ics)\b",
    re.I,
)
#: Magnetic resonance imaging, not R49's resonance disorders of the voice.
_MAGNETIC_RESONANCE = re.compile(r"\bmagnetic\s+resonance\b|\bnmr\b|\bmri\b", re.I)
#: Codes whose words a procedure shares, and the wording of that procedure.
_HOMONYMS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("R20.0", _PROCEDURAL_ANESTHESIA),
    ("R49", _MAGNETIC_RESONANCE),
)
#: Z67: blood type, a test's result that the test's name does not give.
_BLOOD_TYPE = "Z67"


def is_procedure_homonym(code: str, text: str) -> bool:
    """True when the text speaks of a procedure that shares the code's words: anaesthesia or
    analgesia given beside R20.0 (anaesthesia of skin), magnetic resonance imaging beside
    R49 (voice and resonance disorders)."""
    code = code.upper()
    return any(
        code.startswith(prefix) and wording.search(text) is not None
        for prefix, wording in _HOMONYMS
    )


def is_test_result_code(code: str) -> bool:
    """Z67, blood type: a Z code that a test's result gives, so a test's name cannot."""
    return code.upper().startswith(_BLOOD_TYPE)


#: A blood group as a report writes it: "group O", "Rh negative", "A positive", "AB+" (the
#: group's letters in capitals: "a positive Mantoux test" gives no group).
_BLOOD_GROUP = re.compile(
    r"(?i:\b(?:type|group)\s+)(?:A|B|AB|O)\b|(?i:\brh(?:esus)?\b)"
    r"|\b(?:A|B|AB|O)\s*(?:Rh\s*)?(?i:positive|negative)\b|\b(?:A|B|AB|O)\s?[+-](?!\w)"
)


def states_a_blood_group(text: str) -> bool:
    """True when the text gives a blood group ("group O", "A positive", "Rh negative"):
    what a blood type code (Z67) codes, not a blood count or a blood test."""
    return _BLOOD_GROUP.search(text) is not None


#: Z00-Z13, persons encountering health services for examinations: the reason for a visit.
_EXAMINATION_ENCOUNTER = tuple(f"Z{n:02d}" for n in range(14))
_VISIT_WORDING = re.compile(
    r"\b(?:check-?ups?|screening|routine|annual|well[- ](?:child|baby|woman|man)"
    r"|pre-?employment|health (?:check|assessment|examination)|general medical examination)\b",
    re.I,
)


def is_examination_encounter(code: str) -> bool:
    """Z00-Z13: an encounter for an examination, screening or observation."""
    return code.upper().startswith(_EXAMINATION_ENCOUNTER)


def names_a_visit(text: str) -> bool:
    """True when the text names a visit made for an examination (a check-up, a screening, a
    routine or general medical examination), not an examination done in the course of care
    ("Physical examination", "chest X-ray")."""
    return _VISIT_WORDING.search(text) is not None


#: R59.1 "Generalized enlarged lymph nodes" holds "Lymphadenopathy NOS"; nodes at a named site
#: are localized, R59.0, unless the note says they are generalized.
_GENERALIZED_NODES = "R59.1"
_LOCALIZED_NODES = "R59.0"
_NODE_SITE = re.compile(
    r"\b(?:(?:latero|para)?cervical|neck|supraclavicular|infraclavicular|axill(?:a|ary)"
    r"|inguinal|femoral|iliac|pelvic|mediastinal|hilar|paratracheal|subcarinal|paracardiac"
    r"|retroperitoneal|para-?aortic|mesenteric|celiac|perigastric|peripancreatic|portal"
    r"|abdominal|intra-?abdominal|(?:infra|supra)diaphragmatic|submandibular|submaxillary"
    r"|submental|(?:pre|retro|post)auricular|occipital|parotid|jugular|epitrochlear|popliteal)\b",
    re.I,
)
_GENERALIZED = re.compile(r"\b(?:generali[sz]ed|diffuse|widespread|disseminated)\b", re.I)


def localized(code: str, text: str) -> str | None:
    """The localized code a span names where the code it drew is the generalized one: R59.0
    for "inguinal lymphadenopathy" in place of R59.1, or None."""
    if (
        code.upper() == _GENERALIZED_NODES
        and _NODE_SITE.search(text)
        and not _GENERALIZED.search(text)
    ):
        return _LOCALIZED_NODES
    return None


#: R69, "Illness, unspecified": for a patient the note says is ill, the illness not named.
_ILL_DEFINED = ("R69",)
_ILLNESS_WORDING = re.compile(
    r"\b(?:ill|illness(?:es)?|diseases?|sick(?:ness)?|unwell|ailments?|disorders?)\b", re.I
)


def is_ill_defined(code: str) -> bool:
    """R69, illness unspecified: a code any span may look like, when nothing better matches."""
    return code.upper().startswith(_ILL_DEFINED)


def names_an_illness(text: str) -> bool:
    """True when the text says someone is ill or has a disease ("a rare disease", "the
    illness"), which "a 64-year-old male patient" or "We decided" do not."""
    return _ILLNESS_WORDING.search(text) is not None


#: Titles of an unspecified disorder of an organ or system: "Disorder of bone, unspecified",
#: "Liver disease, unspecified", "Other disorders of retroperitoneum", "Coagulation defect,
#: unspecified". Infections (A-B) and
#: mental disorders (F) are named by their organism or kind, not an organ, and stay out.
_GENERIC_DISORDER = re.compile(
    r"\b(?:disorders?|diseases?|defects?)\b.*\bunspecified\b"
    r"|\bunspecified\b.*\b(?:disorders?|diseases?|defects?)\b"
    r"|^other (?:disorders?|diseases?) of\b",
    re.I,
)
_NAMED_OTHERWISE = ("A", "B", "F")
#: Words that say something is wrong, beyond naming the organ: "a disease", "lesions",
#: "abnormal", "hepatitis", "nephropathy", "failure".
_SOMETHING_WRONG = re.compile(
    r"\b(?:diseases?|disorders?|lesions?|abnormal\w*|anomal\w*|dysfunction\w*|patholog\w*"
    r"|alterations?|involvement|affect(?:ed|ation)|damaged?|injur(?:y|ies)|failure"
    r"|insufficiency|defects?|malformations?|problems?|syndromes?|\w+itis|\w+osis"
    r"|\w+pathy)\b",
    re.I,
)


def is_generic_disorder(code: str, title: str) -> bool:
    """An unspecified disorder of an organ or system (M89.9 "Disorder of bone, unspecified",
    K76.9 "Liver disease, unspecified"): a code a mention of the organ alone may look like."""
    return (
        not code.upper().startswith(_NAMED_OTHERWISE)
        and "classified elsewhere" not in title.lower()
        and _GENERIC_DISORDER.search(title) is not None
    )


def says_something_is_wrong(text: str) -> bool:
    """True when the text says something is wrong ("bone lesions", "liver disease",
    "abnormal", "hepatitis"), not only names an organ ("Her liver", "Bone densitometry")."""
    return _SOMETHING_WRONG.search(text) is not None


#: Titles of a congenital malformation named by its organ only: "Congenital malformation,
#: unspecified", "Other specified congenital malformations of kidney".
_GENERIC_MALFORMATION = re.compile(r"\bcongenital malformations?\b", re.I)
#: Words that say a malformation is there from birth: "congenital", "agenesis", "atresia".
_MALFORMATION = re.compile(
    r"\b(?:congenital\w*|malformations?|malformed|anomal\w*|(?:at|since|from) birth"
    r"|birth defects?|a?genesis|dysgenesis|aplasia|hypoplasia|atresia|ectopi\w*|accessory"
    r"|duplicat\w*|cleft)\b",
    re.I,
)


def is_generic_malformation(title: str) -> bool:
    """A congenital malformation named by its organ only (Q89.9 "Congenital malformation,
    unspecified", Q63.8 "Other specified congenital malformations of kidney")."""
    return _GENERIC_MALFORMATION.search(title) is not None


def names_a_malformation(text: str) -> bool:
    """True when the text says a malformation is there from birth ("congenital",
    "agenesis", "venous malformation"), which "a deformity" or "dysplasia" of tissue do not
    (Guidelines I.C.17: Q00-Q99 code a documented congenital anomaly)."""
    return _MALFORMATION.search(text) is not None


#: D37-D44: neoplasms of uncertain behavior, a histologist's finding.
_UNCERTAIN_BEHAVIOR = tuple(f"D{n}" for n in range(37, 45))
#: What says so: the word itself, or a named histology the Alphabetic Index gives an uncertain
#: behavior ("craniopharyngioma" D44.4, "Leydig cell tumor" D40.1-).
_HISTOLOGY = re.compile(
    r"\buncertain\b|\bborderline\b|\blow malignant potential\b|\w{3,}omas?\b"
    r"|\bcell tumou?rs?\b",
    re.I,
)


def is_uncertain_behavior(code: str) -> bool:
    """D37-D44, a neoplasm of uncertain behavior."""
    return code.upper().startswith(_UNCERTAIN_BEHAVIOR)


def names_a_histology(text: str) -> bool:
    """True when the text gives a neoplasm's histology or behavior ("borderline", "Leydig
    cell tumor", "craniopharyngioma"), not only a "tumor" or "mass": the Alphabetic Index
    codes those of unspecified behavior (Tumor -> see Neoplasm, unspecified behavior: D49)."""
    return _HISTOLOGY.search(text) is not None


# ---------------------------------------------------------------- "with"


@dataclass(frozen=True)
class Combination:
    """A combination code the guidelines presume from two or three coded conditions."""

    code: str
    parts: tuple[str, ...]
    reason: str


def _first(codes: Iterable[str], prefixes: tuple[str, ...]) -> str | None:
    return next((c for c in sorted(codes) if c.upper().startswith(prefixes)), None)


_CKD_LATE = ("N18.5", "N18.6")


def combinations(
    codes: Iterable[str], present: Mapping[str, object] | None = None
) -> list[Combination]:
    """The combination codes the guidelines presume from ``codes`` (a note's accepted codes):
    hypertension (I10) with heart failure (I50) is I11.0, with chronic kidney disease (N18)
    I12.9 or I12.0 (stage 5, end stage), with both I13.0 or I13.2; diabetes (E08-E13) with
    chronic kidney disease is its ".22" code. Codes in ``present`` are not proposed again."""
    codes = list(codes)
    present = present or {}
    out: list[Combination] = []
    hypertension = _first(codes, ("I10",))
    failure = _first(codes, ("I50",))
    ckd = _first(codes, ("N18",))
    late = ckd is not None and ckd.upper().startswith(_CKD_LATE)
    presumed = "the guidelines presume the link unless the note says otherwise"
    if hypertension and failure and ckd:
        code = "I13.2" if late else "I13.0"
        out.append(
            Combination(
                code,
                (hypertension, failure, ckd),
                f"hypertension with heart failure and chronic kidney disease: {presumed}",
            )
        )
    elif hypertension and failure:
        out.append(
            Combination(
                "I11.0", (hypertension, failure), f"hypertension with heart failure: {presumed}"
            )
        )
    elif hypertension and ckd:
        out.append(
            Combination(
                "I12.0" if late else "I12.9",
                (hypertension, ckd),
                f"hypertension with chronic kidney disease: {presumed}",
            )
        )
    if ckd:
        for prefix in ("E08", "E09", "E10", "E11", "E13"):
            diabetes = _first(codes, (prefix,))
            if diabetes is not None:
                out.append(
                    Combination(
                        f"{prefix}.22",
                        (diabetes, ckd),
                        f"diabetes with chronic kidney disease: {presumed}",
                    )
                )
    return [c for c in out if c.code not in present]
