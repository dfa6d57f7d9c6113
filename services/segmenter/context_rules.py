"""ConText rules: which words are negation, uncertainty, family and history cues.

medspaCy's default English rules, less its family rule, plus the rules in ``context_rules``:
relatives are family cues but a child, son or daughter is the patient in a pediatric report
unless a possessive names them ("her son"); "status post", "s/p", "previous" are historical,
and "ex-" for the one word it prefixes ("ex-smoker");
"suspected", "was suspected", "cannot be excluded" uncertain; "risk of" hypothetical; "was
negative for", "was excluded", "ruling out" negated, and "no toxic habits" a cue with nothing
after it; a history said to hold nothing ("with no history of interest", "no relevant medical
history,") negates nothing; a new event ("consulted", "presented", "who", "was diagnosed",
"underwent") ends any cue's scope; "disease free" says all there is to say, and "free",
"prophylaxis" and "unlikely" reach a few words back, not the sentence's start.
``as_phrases`` spells the token patterns out as phrases (same matches, much faster). How the
cues mark spans is ``context.py``'s business.
"""

from __future__ import annotations

from itertools import product
from pathlib import Path
from typing import Any

from icdcoder.services.segmenter.light_import import import_context


def _words(words: str) -> list[str]:
    return words.split()


#: Relatives that are the patient in pediatric reports ("the child", "daughter vesicles")
#: unless a possessive names them ("her son"): ConText's default family rule is replaced.
_RELATIVES = _words("""
    aunt aunts brother brothers cousin cousins dad dads fam family families father fathers
    grandchild grandchildren granddaughter granddaughters grandfather grandfathers
    grandmother grandmothers grandparent grandparents grandson grandsons husband mom moms mother
    mothers nephew nephews niece nieces parent parents partner sibling siblings sister sisters
    spouse uncle uncles wife""")
_OFFSPRING = _words("child children son sons daughter daughters")
_POSSESSIVES = _words("his her their whose")
#: Words for the patient: "a 27-year-old patient without allergies" negates the allergies
#: (``context.py``: "without" after them is no condition's name).
PERSON_WORDS = frozenset(
    _words("""
    patient patients man men woman women male female boy girl child infant newborn baby
    adolescent adult he she who""")
)
#: Tokens a "without" negates ("without fever or dysthermic sensation": four).
WITHOUT_SCOPE = 5
#: medspaCy's backward cues that reach a few tokens back, not to the sentence's start: "disease
#: free" ("after the nephrectomy for renal carcinoma she remains disease free" keeps the
#: carcinoma), "DVT prophylaxis" ("atorvastatin for diabetes, as prophylaxis for ..."),
#: "pneumonia unlikely".
BACKWARD_SCOPES = {"free": 2, "prophylaxis": 3, "unlikely": 3}
#: What a patient is said to be free of.
_DISEASE = _words("disease tumor tumour recurrence relapse metastasis metastases progression")
_TIME_UNITS = _words("day days week weeks month months hour hours night nights year years")

#: "No relevant past medical history": a history said to hold nothing. CodiEsp's case reports
#: open so ("sin antecedentes de interés") before the condition they report.
_NO = _words("no without denies denied")
#: The literals of those cues.
EMPTY_HISTORY = ("no history of interest", "no relevant history", "no history.")
#: The category of pseudo cues that say all there is to say (an empty history, "disease
#: free"): they modify nothing and ``context.py`` cuts them out of spans.
NOTHING_MORE = "NOTHING_MORE"
_HISTORY = {"LOWER": {"IN": _words("history histories antecedents background")}}
_HABITS = {"LOWER": {"IN": ["habits", "habit"]}}
_WHOSE = _words("""a any other past medical surgical personal family pathological previous
    known clinical urological systemic physiological obstetric perinatal or and""")
_SAID_TO_MATTER = _words("relevant significant remarkable notable important pertinent")
_OF_INTEREST = _words("interest note relevance significance importance")
_NOTHING_OF_INTEREST = [
    {"LOWER": {"IN": _NO}},
    {"LOWER": {"IN": _WHOSE + _SAID_TO_MATTER}, "OP": "*"},
    _HISTORY,
    {"LOWER": "of"},
    {"LOWER": {"IN": _OF_INTEREST}},
]
#: ... but "no relevant history of diabetes" negates the diabetes.
_NOTHING_RELEVANT = [
    {"LOWER": {"IN": _NO}},
    {"LOWER": {"IN": _WHOSE}, "OP": "*"},
    {"LOWER": {"IN": _SAID_TO_MATTER}},
    {"LOWER": {"IN": _WHOSE}, "OP": "*"},
    _HISTORY,
    {"LOWER": {"NOT_IN": ["of", ":", "for", "including", "includes"]}},
]
#: "No family history." ends there; "No history: diabetes" and "no history of" go on.
_NO_HISTORY_THEN_STOP = [
    {"LOWER": {"IN": _NO}},
    {"LOWER": {"IN": _WHOSE}, "OP": "*"},
    _HISTORY,
    {"LOWER": {"IN": [",", ".", ";"]}},
]


def context_rules() -> list[Any]:
    """The ConText rules used: medspacy's defaults, less its family rule, plus these."""
    ConTextRule = import_context().ConTextRule

    def rule(
        literal: str, category: str, direction: str, pattern: Any = None, max_scope: Any = None
    ) -> Any:
        return ConTextRule(
            literal, category, pattern=pattern, direction=direction, max_scope=max_scope
        )

    def any_of(*words: str) -> dict[str, Any]:
        return {"LOWER": {"IN": list(words)}}

    be = any_of("was", "were", "is", "are", "been", "being")
    defaults = [
        # "without" negates a few words at most: "a woman, without known drug allergies, with a
        # history of hypertension" (``context.py`` keeps it in condition names)
        rule("without", "NEGATED_EXISTENCE", "FORWARD", max_scope=WITHOUT_SCOPE)
        if r.literal == "without"
        # a few backward cues reach the words just before them, not the sentence's start
        else rule(r.literal, r.category, r.direction, r.pattern, BACKWARD_SCOPES[r.literal])
        if r.literal in BACKWARD_SCOPES
        else r
        for r in ConTextRule.from_json(_default_rules_path())
        if r.category != "FAMILY"
    ]
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
        # "ex-smoker", "ex-drinker": the prefix makes the next word a past one, no more
        rule("ex-", "HISTORICAL", "FORWARD", [{"LOWER": "ex"}, {"LOWER": "-"}], max_scope=1),
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
                    "who",
                    "diagnosed",
                    "underwent",
                    "began",
                    "suffered",
                )
            ],
        ),
        # "a 33-year-old man with no history of interest was diagnosed with Crohn's disease":
        # a history said to hold nothing negates nothing after it (the longer cue prunes "no")
        # (``context.py`` cuts these cues out of spans: they name nothing)
        *(
            rule(literal, NOTHING_MORE, "PSEUDO", pattern)
            for literal, pattern in (
                (EMPTY_HISTORY[0], _NOTHING_OF_INTEREST),
                (EMPTY_HISTORY[1], _NOTHING_RELEVANT),
                (EMPTY_HISTORY[2], _NO_HISTORY_THEN_STOP),
            )
        ),
        # "she remains disease free", "free of recurrence": the cue says it all, and the
        # carcinoma earlier in the sentence stands
        rule(
            "disease free",
            NOTHING_MORE,
            "PSEUDO",
            [any_of(*_DISEASE), {"LOWER": "-", "OP": "?"}, {"LOWER": "free"}],
        ),
        rule(
            "free of disease",
            NOTHING_MORE,
            "PSEUDO",
            [{"LOWER": "free"}, {"LOWER": "of"}, any_of(*_DISEASE)],
        ),
        # "the left ventricular free wall", "free fluid": anatomy and findings, not an absence
        rule(
            "free wall",
            "NEGATED_EXISTENCE",
            "PSEUDO",
            [{"LOWER": "free"}, any_of("wall", "walls", "flap", "flaps", "fluid", "air", "edge")],
        ),
        # "with no toxic habits, with a history of urticaria": the cue says it all
        rule(
            "no toxic habits",
            "NEGATED_EXISTENCE",
            "FORWARD",
            [any_of(*_NO), {"LOWER": "other", "OP": "?"}, {"LOWER": "toxic"}, _HABITS],
            max_scope=1,
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
    ConTextRule = import_context().ConTextRule

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
    return str(
        Path(import_context().context.__file__).resolve().parents[2]
        / "resources"
        / "en"
        / "context_rules.json"
    )
