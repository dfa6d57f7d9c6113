"""Aggregator core: span verdicts -> the document's codes, ranked, each with its evidence.

Rules, in order:

1. Only accepted (and, if configured, review) verdicts for codes in the current catalogue count.
2. Context: a negated span produces no code. A family span produces only a family-history
   code (Z80-Z84); the condition's own code is kept visible under ``excluded`` with the
   reason. A hypothetical span's codes go to review (an uncertain diagnosis is coded as if
   established at an inpatient discharge only). A historical span stands for a
   personal-history code (Z85-Z87, Z92), a status code (Z88-Z99: "status post nephrectomy")
   or the code of a lifelong condition ("a history of hypertension" is I10:
   ``shared/context.CHRONIC``); any other code of it goes to review with the reason (is the
   condition current?). Without review codes, such codes stay under ``excluded``.
3. A code whose children are 7th-character extensions becomes its default billable code.
   Lymphadenopathy at a named site is localized: R59.0, not R59.1 (``localized_nodes``).
4. One entry per code, gathering all its evidence spans; confidence is the best verdict's, or
   with ``combine=noisy_or`` 1 - prod(1 - c) over its evidence spans' best verdicts.
5. When a code and its ancestor both appear, the more specific code keeps both evidences.
6. Documented specificity: an accepted code whose title asks for words its evidence sentences
   do not state gives way to a code of its category, on some of the same evidence, whose
   title they state in full ("type 2 diabetes mellitus": E11.9, not E11.65 "with
   hyperglycemia"); the two exchange confidence and acceptance (``documented_specificity``).
7. Conflicts, most confident code first (a code whose title its evidence states word for word,
   "Type 2 diabetes mellitus without complications", before the others:
   ``shared/guidelines.py``); the code in conflict goes to review with the reason, or, when
   review codes are not kept, is excluded with it (a stated code that displaces a more
   confident one of its category takes that confidence, so it ranks above it):
   - a code that does not fit the patient: another sex's organs, or a pregnancy code in a note
     that mentions no pregnancy (``shared/consistency.py``);
   - Excludes1 with a more confident accepted code (both are reported only when the conditions
     are unrelated, which a coder decides);
   - a second code of one category whose evidence all supports a more confident accepted code
     of that category (E11.8 beside E11.9 on "type 2 diabetes"): the guidelines code a
     condition once, at the most specific level the note documents;
   - an injury-chapter code (S00-T88) whose evidence sentences name no external cause, no
     injury, poisoning or complication of care ("acute kidney injury" is N17.9);
   - a code other than a Z code whose evidence only names a test or procedure ("chest pain"
     on "chest X-ray"), and an encounter-for-examination code (Z00-Z13) whose evidence
     sentences name no visit made for one (Z00.00 on "Physical examination");
   - an unspecified disorder of an organ whose evidence names the organ and says nothing is
     wrong with it (M89.9 "Disorder of bone, unspecified" on "Bone densitometry"), and a code
     whose evidence only gives the patient's age or sex, or R69 with no one said to be ill;
   - a congenital malformation named by its organ (Q89.9, Q63.8) whose evidence says nothing
     is malformed from birth ("preserved urothelium without dysplasia"), and a blood type
     code (Z67) whose evidence states no blood group ("Blood count");
   - a neoplasm of uncertain behavior (D37-D44) whose evidence names a tumor or mass and no
     histology (the Alphabetic Index: Tumor -> Neoplasm, unspecified behavior, D49);
   - a category or subcategory (a code with codes under it: H50.11 "Monocular exotropia" is
     reported as H50.111, right eye, or H50.112, left eye): it stays, for review, at its
     confidence.
8. Signs and symptoms: an accepted chapter-R code goes to review (or is excluded) beside an
   accepted definitive diagnosis that may explain it: of its block's body system, or stated in
   one of its sentences, as ``symptoms`` says.
9. "With": the combination code the guidelines presume from accepted codes (I10 and I50.-:
   I11.0; E11.- and N18.-: E11.22) is proposed for review, on its parts' evidence, at the
   lowest of their confidences.
10. Ranked by confidence. A code sent to review because its evidence cannot support it (the
    patient, injury, examination, organ, malformation, blood group, age, illness, histology
    and test-name rules of 7)
    keeps only ``unsupported_weight`` of its confidence: it ranks below the codes the note
    does support. A code that yields to a rival (Excludes1, one per category, an explaining
    diagnosis) keeps its confidence.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from icdcoder.shared.catalogue import Catalogue
from icdcoder.shared.consistency import NoteFacts, inconsistency, read_facts
from icdcoder.shared.context import context_reason, review_reason
from icdcoder.shared.guidelines import (
    combinations,
    describes_only_the_patient,
    explains_symptom,
    is_definitive,
    is_examination_encounter,
    is_generic_disorder,
    is_generic_malformation,
    is_ill_defined,
    is_injury_chapter,
    is_procedure_homonym,
    is_symptom,
    is_test_result_code,
    is_uncertain_behavior,
    localized,
    names_a_histology,
    names_a_malformation,
    names_a_visit,
    names_an_illness,
    names_test_or_procedure,
    says_something_is_wrong,
    states_a_blood_group,
    states_title,
    trauma_wording,
    undocumented,
)
from icdcoder.shared.messages import (
    CodedNote,
    CodeResult,
    Evidence,
    ExcludedSpan,
    Span,
    Verdict,
    VerifiedNote,
)
from icdcoder.shared.notes import content_hash
from icdcoder.shared.settings import AggregatorConfig


@dataclass(frozen=True)
class Conflict:
    """Why a code may not stand as accepted, and what a coder checks."""

    reason: str
    why: str
    #: Its evidence cannot support the code (not a rival code's): it ranks lower.
    unsupported: bool = False


@dataclass
class _Entry:
    code: str
    description: str
    confidence: float
    accepted: bool
    justification: str
    evidence: dict[str, Evidence] = field(default_factory=dict)
    #: Best verdict confidence per evidence span.
    span_confidence: dict[str, float] = field(default_factory=dict)

    def absorb(self, other: _Entry) -> None:
        for span_id, ev in other.evidence.items():
            self.evidence.setdefault(span_id, ev)
        for span_id, conf in other.span_confidence.items():
            self.span_confidence[span_id] = max(conf, self.span_confidence.get(span_id, 0.0))
        self.accepted = self.accepted or other.accepted
        if other.confidence > self.confidence:
            self.confidence = other.confidence

    def combined(self, combine: str) -> float:
        if combine != "noisy_or" or not self.span_confidence:
            return self.confidence
        miss = 1.0
        for conf in self.span_confidence.values():
            miss *= 1.0 - conf
        return 1.0 - miss

    def result(self) -> CodeResult:
        evidence = sorted(self.evidence.values(), key=lambda e: (e.start, e.end))
        return CodeResult(
            code=self.code,
            description=self.description,
            confidence=round(self.confidence, 4),
            decision="accept" if self.accepted else "review",
            justification=self.justification,
            evidence=evidence,
        )


class Aggregator:
    def __init__(
        self,
        catalogue: Catalogue,
        config: AggregatorConfig | None = None,
        *,
        negated_for_review: bool = False,
    ) -> None:
        """``negated_for_review``: a negated span's codes go to review, not away
        (``ICDCODER_NEGATED_MENTIONS=review``)."""
        self._catalogue = catalogue
        self._negated_for_review = negated_for_review
        config = config or AggregatorConfig()
        self._include_review = config.include_review
        self._combine = config.combine
        self._one_per_category = config.one_code_per_category
        self._patient_checks = config.patient_checks
        self._stated_title = config.stated_title
        self._documented_specificity = config.documented_specificity
        self._symptoms = config.symptoms
        self._injury_needs_trauma = config.injury_needs_trauma
        self._combination_codes = config.combination_codes
        self._procedure_names = config.procedure_names
        self._localized_nodes = config.localized_nodes
        self._wording_rules = tuple(
            rule for rule in _NEEDS_WORDING if getattr(config, rule.setting)
        )
        self._unsupported_weight = config.unsupported_weight

    def aggregate(self, note: VerifiedNote) -> CodedNote:
        started = time.perf_counter()
        spans = {item.span.span_id: item.span for item in note.items}
        entries: dict[str, _Entry] = {}
        excluded: dict[tuple[str, str], ExcludedSpan] = {}
        for verdict in note.verdicts:
            span = spans.get(verdict.span_id)
            if span is None or not self._counts(verdict):
                continue
            info = self._catalogue.get(verdict.code)
            if info is None:
                excluded[(span.span_id, verdict.code)] = _excluded(
                    span, verdict.code, "not in catalogue"
                )
                continue
            reason = context_reason(span, info.code, negated_for_review=self._negated_for_review)
            doubt = review_reason(span, info.code)  # a negated, past or uncertain condition
            if reason is None and doubt is not None and not self._include_review:
                reason = doubt
            if reason is not None:
                excluded[(span.span_id, info.code)] = _excluded(span, info.code, reason)
                continue
            code = info.code
            if self._localized_nodes and (local := localized(code, span.text)) is not None:
                verdict = verdict.model_copy(
                    update={
                        "code": local,
                        "justification": f"{verdict.justification} The note names the site: "
                        f"localized ({local}), not {code}.",
                    }
                )
                code = local
            if doubt is not None:
                verdict = verdict.model_copy(
                    update={
                        "decision": "review",
                        "justification": f"{verdict.justification} For review: {doubt}.",
                    }
                )
            self._add(entries, span, verdict, code)
        kept = self._keep_most_specific(entries)
        for entry in kept:
            entry.confidence = entry.combined(self._combine)
        sentences = {
            item.span.span_id: note.text[item.span.sentence_start : item.span.sentence_end]
            for item in note.items
        }
        if self._documented_specificity:
            self._give_way_to_documented(kept, sentences)
        kept, dropped = self._resolve_conflicts(kept, read_facts(note.text), sentences)
        dropped += self._explained_symptoms(kept, sentences)
        kept = [entry for entry in kept if all(entry is not d for d, _ in dropped)]
        if self._combination_codes:
            kept += self._combinations(kept)
        for entry, reason in dropped:
            for ev in entry.evidence.values():
                excluded[(ev.span_id, entry.code)] = _excluded(ev, entry.code, reason)
        codes = [e.result() for e in sorted(kept, key=lambda e: (-e.confidence, e.code))]
        return CodedNote(
            note_id=note.note_id,
            catalogue_version=note.catalogue_version,
            pack=note.pack,
            content_hash=content_hash(note.text),
            codes=codes,
            excluded=sorted(excluded.values(), key=lambda x: (x.start, x.code)),
            verifier=note.verifier,
            timings={**note.timings, "aggregator": time.perf_counter() - started},
        )

    def _counts(self, verdict: Verdict) -> bool:
        return verdict.decision == "accept" or (
            verdict.decision == "review" and self._include_review
        )

    def _add(self, entries: dict[str, _Entry], span: Span, verdict: Verdict, code: str) -> None:
        billable, assumption = self._catalogue.billable(code)
        info = self._catalogue.get(billable)
        description = info.description if info else ""
        justification = (
            f"{verdict.justification} {assumption}." if assumption else verdict.justification
        )
        entry = _Entry(
            code=billable,
            description=description,
            confidence=verdict.confidence,
            accepted=verdict.decision == "accept",
            justification=justification,
            evidence={span.span_id: _evidence(span)},
            span_confidence={span.span_id: verdict.confidence},
        )
        current = entries.get(billable)
        if current is None:
            entries[billable] = entry
        elif entry.confidence > current.confidence:
            entry.absorb(current)
            entries[billable] = entry
        else:
            current.absorb(entry)

    def _keep_most_specific(self, entries: dict[str, _Entry]) -> list[_Entry]:
        """Fold each code that is an ancestor of another present code into the descendant."""
        kept = dict(entries)
        for code in sorted(entries, key=lambda c: -len(c)):
            if code not in kept:
                continue
            for ancestor in self._catalogue.ancestors(code):
                general = kept.pop(ancestor, None)
                if general is not None:
                    kept[code].absorb(general)
        return list(kept.values())

    def _titles(self, codes: list[str]) -> list[str]:
        return [
            text
            for code in codes
            if (info := self._catalogue.get(code)) is not None
            for text in (info.description, *info.inclusion_terms)
        ]

    def _stated(self, entry: _Entry) -> bool:
        """Whether some evidence span is, word for word, the code's title or inclusion term
        (a 7th-character code's: its parent's)."""
        codes = [entry.code]
        if len(entry.code.replace(".", "")) == 7:
            codes += self._catalogue.ancestors(entry.code)[:1]
        titles = self._titles(codes)
        return any(states_title(ev.text, titles) for ev in entry.evidence.values())

    def _only_general(self, entry: _Entry, accepted: _Entry) -> bool:
        """Whether the entry's evidence beyond the accepted code's states no more than a title
        of one of its ancestors ("type 2 diabetes mellitus" beside "... without
        complications"): the condition the accepted code codes more specifically."""
        extra = entry.evidence.keys() - accepted.evidence.keys()
        if not self._stated_title:
            return not extra
        titles = self._titles(self._catalogue.ancestors(accepted.code))
        return all(states_title(entry.evidence[span_id].text, titles) for span_id in extra)

    def _give_way_to_documented(self, entries: list[_Entry], sentences: dict[str, str]) -> None:
        """An accepted code whose title asks for words its evidence sentences do not state
        gives way to a code of its category, on some of the same evidence, whose title they
        state in full: that one is accepted with the confidence, and conflicts then send the
        other to review ("type 2 diabetes mellitus": E11.9, not E11.65 "with hyperglycemia").
        Injury codes (their 7th character and site carry defaults of their own) are left be."""
        for entry in sorted(entries, key=lambda e: (-e.confidence, e.code)):
            if not entry.accepted or is_injury_chapter(entry.code):
                continue
            said = _said(entry, sentences)
            missing = undocumented(entry.description, said)
            if not missing:
                continue
            for other in sorted(entries, key=lambda e: (-e.confidence, e.code)):
                if (
                    other is entry
                    or other.code[:3] != entry.code[:3]
                    or other.confidence >= entry.confidence
                    or not other.evidence.keys() & entry.evidence.keys()
                    or undocumented(other.description, said)
                ):
                    continue
                words = " ".join(missing)
                other.accepted = True
                other.confidence, entry.confidence = entry.confidence, other.confidence
                other.justification += (
                    f" Accepted in place of {entry.code}: its sentences do not document"
                    f" '{words}', and a code is as specific as the documentation."
                )
                entry.justification += (
                    f" {other.code} takes its place: '{words}' is not documented."
                )
                break

    def _resolve_conflicts(
        self, entries: list[_Entry], facts: NoteFacts, sentences: dict[str, str]
    ) -> tuple[list[_Entry], list[tuple[_Entry, str]]]:
        """Most confident first (stated titles before the others): a code that does not fit
        the patient, or conflicts with a more confident accepted code, goes to review with the
        reason, or, without review codes, is dropped with it."""
        kept: list[_Entry] = []
        dropped: list[tuple[_Entry, str]] = []
        stated = {id(e): self._stated_title and self._stated(e) for e in entries}
        for entry in sorted(entries, key=lambda e: (not stated[id(e)], -e.confidence, e.code)):
            conflict = self._conflict(entry, kept, facts, sentences)
            if conflict is None:
                kept.append(entry)
                continue
            winner = self._category_winner(entry, [k for k in kept if k.accepted])
            if winner is not None and winner.confidence < entry.confidence:
                # a stated title settled first: it ranks above the code it displaced
                winner.confidence, entry.confidence = entry.confidence, winner.confidence
            self._demote(entry, conflict, kept, dropped)
        return kept, dropped

    def _demote(
        self,
        entry: _Entry,
        conflict: Conflict,
        kept: list[_Entry],
        dropped: list[tuple[_Entry, str]],
    ) -> None:
        """To review with the reason, or, without review codes, dropped with it."""
        if self._include_review:
            entry.accepted = False
            entry.justification += f" {conflict.reason}: for review, {conflict.why}."
            if conflict.unsupported:
                entry.confidence *= self._unsupported_weight
            kept.append(entry)
        else:
            dropped.append((entry, conflict.reason))

    def _explained_symptoms(
        self, kept: list[_Entry], sentences: dict[str, str]
    ) -> list[tuple[_Entry, str]]:
        """Accepted chapter-R codes that an accepted definitive diagnosis may explain: to review
        (or dropped, returned) with the reason. The diagnoses are read before any symptom moves,
        so the order of the codes does not matter."""
        dropped: list[tuple[_Entry, str]] = []
        if self._symptoms == "off":
            return dropped
        diagnoses = [e for e in kept if e.accepted and is_definitive(e.code)]
        for entry in [e for e in kept if e.accepted and is_symptom(e.code)]:
            mine = {sentences.get(span_id) for span_id in entry.evidence} - {None}
            for dx in diagnoses:
                theirs = {sentences.get(span_id) for span_id in dx.evidence} - {None}
                why = explains_symptom(
                    entry.code,
                    dx.code,
                    shared_sentence=bool(mine & theirs),
                    criterion=self._symptoms,
                )
                if why is not None:
                    conflict = Conflict(
                        f"Symptom: {why}",
                        "signs and symptoms routinely associated with a diagnosis are not coded"
                        " beside it (Official Guidelines I.B.5)",
                    )
                    self._demote(entry, conflict, [], dropped)
                    break
        return dropped

    def _combinations(self, kept: list[_Entry]) -> list[_Entry]:
        """The combination codes the guidelines presume from the accepted codes, for review."""
        accepted = {e.code: e for e in kept if e.accepted}
        present = {e.code: e for e in kept}
        proposed: list[_Entry] = []
        for combo in combinations(accepted, present):
            info = self._catalogue.get(combo.code)
            if info is None:
                continue
            parts = [accepted[code] for code in combo.parts]
            entry = _Entry(
                code=info.code,
                description=info.description,
                confidence=min(p.confidence for p in parts),
                accepted=False,
                justification=f"Combination of {' + '.join(combo.parts)}, {combo.reason}: "
                "for review, the combination code replaces the parts it includes.",
            )
            for part in parts:
                entry.evidence.update(part.evidence)
            proposed.append(entry)
        return proposed

    def _conflict(
        self, entry: _Entry, kept: list[_Entry], facts: NoteFacts, sentences: dict[str, str]
    ) -> Conflict | None:
        """Why the entry may not stand as accepted, if it may not: its evidence cannot support
        it (:meth:`_unsupported`), or a more confident accepted code of its own stands in its
        way."""
        weak = self._unsupported(entry, facts, sentences)
        if weak is not None:
            return Conflict(*weak, unsupported=True)
        info = self._catalogue.get(entry.code)
        if info is not None and not info.is_leaf:
            return Conflict(
                "A category or subcategory, which is not reported",
                "one of its codes is, as the note documents it",
            )
        accepted = [k for k in kept if k.accepted]
        for k in accepted:
            if self._catalogue.excludes1_conflict(k.code, entry.code):
                return Conflict(
                    f"Excludes1 with {k.code}, which is more confident",
                    "both are reported only when the conditions are unrelated",
                )
        winner = self._category_winner(entry, accepted)
        if winner is not None:
            return Conflict(
                f"{winner.code}, of the same category, is more confident on the same evidence",
                "a condition is coded once, as specifically as the note documents it",
            )
        return None

    def _unsupported(
        self, entry: _Entry, facts: NoteFacts, sentences: dict[str, str]
    ) -> tuple[str, str] | None:
        """(reason, what a coder checks) when the entry's evidence cannot support it."""
        if self._patient_checks:
            mismatch = inconsistency(entry.code, facts)
            if mismatch is not None:
                return f"Does not fit the patient: {mismatch}", "the note may say otherwise"
        if (
            self._injury_needs_trauma
            and is_injury_chapter(entry.code)
            and not trauma_wording(_said(entry, sentences))
        ):
            return (
                "An injury-chapter code, and its evidence names no injury, external cause,"
                " poisoning or complication of care",
                "a condition no external cause produced is coded in its body system's chapter",
            )
        if (
            self._procedure_names
            and is_examination_encounter(entry.code)
            and not names_a_visit(_said(entry, sentences))
        ):
            return (
                "An encounter-for-examination code, and its evidence names an examination done"
                " in the course of care, not a visit made for one",
                "Z00-Z13 give the reason for a visit: a check-up, a screening, an observation",
            )
        if self._procedure_names and all(
            describes_only_the_patient(ev.text) for ev in entry.evidence.values()
        ):
            return (
                "Its evidence only says who the patient is (age, sex)",
                "an age or a sex is not a diagnosis",
            )
        for rule in self._wording_rules:
            if rule.applies(entry) and not _any_evidence(entry, rule.says):
                return rule.reason, rule.check
        if (
            self._procedure_names
            and not entry.code.startswith("Z")
            and all(
                names_test_or_procedure(ev.text) or is_procedure_homonym(entry.code, ev.text)
                for ev in entry.evidence.values()
            )
        ):
            return (
                "Its evidence only names a test or procedure",
                "a test or procedure is not a diagnosis; its result may be",
            )
        return None

    def _category_winner(self, entry: _Entry, accepted: list[_Entry]) -> _Entry | None:
        """The accepted code of the entry's category that its evidence all supports, if any."""
        if not self._one_per_category:
            return None
        return next(
            (k for k in accepted if k.code[:3] == entry.code[:3] and self._only_general(entry, k)),
            None,
        )


@dataclass(frozen=True)
class _NeedsWording:
    """A code that its evidence must say something for (R69: that someone is ill), on while
    the ``setting`` of :class:`AggregatorConfig` is; else it goes to review with the
    ``reason``, and ``check`` tells the coder what to look for."""

    setting: str
    applies: Callable[[_Entry], bool]
    says: Callable[[str], bool]
    reason: str
    check: str


_NEEDS_WORDING = (
    _NeedsWording(
        "ill_defined",
        lambda entry: is_ill_defined(entry.code),
        names_an_illness,
        "Illness, unspecified, and its evidence says no one is ill",
        "R69 is for an illness the note speaks of without naming it",
    ),
    _NeedsWording(
        "generic_disorders",
        lambda entry: is_generic_disorder(entry.code, entry.description),
        says_something_is_wrong,
        "An unspecified disorder of an organ, and its evidence names the organ but says"
        " nothing is wrong with it",
        "a disorder is coded where the note says the organ is diseased or abnormal",
    ),
    _NeedsWording(
        "generic_disorders",
        lambda entry: is_generic_malformation(entry.description),
        names_a_malformation,
        "A congenital malformation named by its organ, and its evidence says nothing is"
        " malformed from birth",
        "Q00-Q99 code a congenital anomaly the note documents",
    ),
    _NeedsWording(
        "uncertain_behavior",
        lambda entry: is_uncertain_behavior(entry.code),
        names_a_histology,
        "A neoplasm of uncertain behavior, and its evidence names a tumor or mass but no histology",
        "the Alphabetic Index codes a tumor of no stated histology as of unspecified behavior"
        " (D49); uncertain behavior is the histologist's finding",
    ),
    _NeedsWording(
        "procedure_names",
        lambda entry: is_test_result_code(entry.code),
        states_a_blood_group,
        "A blood type code, and its evidence states no blood group",
        "Z67 codes the group a blood test found ('group O, Rh positive')",
    ),
)


def _any_evidence(entry: _Entry, says: Callable[[str], bool]) -> bool:
    """Whether some evidence span of the entry says it (``says`` its text)."""
    return any(says(ev.text) for ev in entry.evidence.values())


def _said(entry: _Entry, sentences: dict[str, str]) -> str:
    """The sentences of the entry's evidence (a span's own text where its sentence is unknown)."""
    return " ".join(sentences.get(span_id, ev.text) for span_id, ev in entry.evidence.items())


def _evidence(span: Span) -> Evidence:
    return Evidence(
        span_id=span.span_id, start=span.start, end=span.end, text=span.text, section=span.section
    )


def _excluded(where: Span | Evidence, code: str, reason: str) -> ExcludedSpan:
    return ExcludedSpan(
        span_id=where.span_id,
        start=where.start,
        end=where.end,
        text=where.text,
        code=code,
        reason=reason,
    )
