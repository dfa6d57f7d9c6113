"""Evaluating a coding pipeline on CodiEsp cases: run every case, score it, build the report.

:func:`evaluate` codes the cases one after another (so per-stage seconds add up), then
:func:`build_report` turns the results into an :class:`EvalReport`; :func:`write_outputs`
saves it as JSON beside a CodiEsp-D run file. Metric definitions: ``docs/evaluation.md``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel, ConfigDict
from tqdm import tqdm

from icdcoder import metrics
from icdcoder.codiesp import CodiEspCase, format_predictions
from icdcoder.metrics import gold_form
from icdcoder.shared.messages import CodedNote, CodeResult, NoteIn, RetrievedNote, VerifierInfo

#: The k of candidate recall@k.
RECALL_KS: tuple[int, ...] = (1, 5, 20)

#: Pipeline stages in the order they run; other timing keys follow, sorted.
STAGES: tuple[str, ...] = ("segmenter", "retriever", "verifier", "aggregator")


class CodingPipeline(Protocol):
    """What :func:`evaluate` needs from a pipeline (``icdcoder.bootstrap.Pipeline`` fits)."""

    @property
    def catalogue_version(self) -> str: ...

    async def code_note(self, note: NoteIn) -> tuple[CodedNote, RetrievedNote]: ...


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RankedCode(_Model):
    code: str  # gold form
    confidence: float
    decision: str


class CaseResult(_Model):
    case_id: str
    gold: list[str]
    predicted: list[RankedCode]  # best first, each code once
    average_precision: float | None  # None: the case has no gold codes
    seconds: float


class Scores(_Model):
    precision: float
    recall: float
    f1: float


class MicroScores(Scores):
    tp: int
    fp: int
    fn: int


class CandidateRecall(_Model):
    k: int
    exact: float
    category: float


class EvalReport(_Model):
    """Every number of one evaluation run, with each case's ranked predictions."""

    split: str
    lang: str
    catalogue_version: str
    pack: str = ""  # the model pack that coded the cases
    verifier: VerifierInfo | None  # first note's backend; token counts summed over notes
    cases: int
    gold_cases: int
    gold_pairs: int
    invalid_gold_pairs: int
    invalid_gold_codes: list[str]  # distinct, sorted
    predicted_pairs: int
    map: float
    map_predicted_cases: float
    #: MAP with predictions under an older edition's gold code counted as it
    #: (:func:`metrics.edition_mapped`), and how many gold pairs name such a code.
    map_edition_mapped: float = 0.0
    older_edition_gold_pairs: int = 0
    micro: MicroScores
    macro: Scores
    macro_labels: int
    candidate_recall: list[CandidateRecall]
    stage_seconds: dict[str, float]
    wall_seconds: float
    notes_per_second: float
    predictions: list[CaseResult]

    def ranked(self) -> dict[str, list[str]]:
        """Case id -> predicted codes (gold form), best first."""
        return {case.case_id: [r.code for r in case.predicted] for case in self.predictions}


@dataclass(frozen=True)
class CaseRun:
    """The pipeline's output for one case and how long it took."""

    case: CodiEspCase
    coded: CodedNote
    retrieved: RetrievedNote
    seconds: float


async def run_cases(
    pipeline: CodingPipeline, cases: Sequence[CodiEspCase], *, progress: bool = True
) -> list[CaseRun]:
    """Code the cases one at a time, with a progress bar on stderr."""
    runs: list[CaseRun] = []
    bar = tqdm(cases, desc="eval", unit="note", file=sys.stderr, disable=not progress)
    for case in bar:
        started = time.perf_counter()
        coded, retrieved = await pipeline.code_note(case.note())
        runs.append(CaseRun(case, coded, retrieved, time.perf_counter() - started))
    return runs


async def evaluate(
    pipeline: CodingPipeline,
    cases: Sequence[CodiEspCase],
    *,
    progress: bool = True,
    is_valid: Callable[[str], bool] = metrics.always_valid,
    is_code: Callable[[str], bool] = metrics.always_valid,
    split: str = "",
    lang: str = "",
) -> EvalReport:
    """Code every case with ``pipeline`` and score the results against their gold codes.

    ``is_valid`` tells which gold codes exist in the pipeline's catalogue (e.g.
    ``Catalogue.is_valid``); invalid ones are counted and still scored as misses. ``is_code``
    tells which can be assigned in its edition (``Catalogue.is_leaf``), for the
    edition-mapped MAP.
    """
    started = time.perf_counter()
    runs = await run_cases(pipeline, cases, progress=progress)
    return build_report(
        runs,
        catalogue_version=pipeline.catalogue_version,
        wall_seconds=time.perf_counter() - started,
        is_valid=is_valid,
        is_code=is_code,
        split=split,
        lang=lang,
    )


def ranked_results(codes: Iterable[CodeResult]) -> list[RankedCode]:
    """A note's codes in gold form, ranked as :func:`metrics.rank_codes` ranks them."""
    results = list(codes)
    best: dict[str, CodeResult] = {}
    for result in results:
        key = gold_form(result.code)
        if key not in best or result.confidence > best[key].confidence:
            best[key] = result
    order = metrics.rank_codes((r.code, r.confidence) for r in results)
    return [
        RankedCode(code=code, confidence=best[code].confidence, decision=best[code].decision)
        for code in order
    ]


def candidate_lists(retrieved: RetrievedNote) -> list[list[str]]:
    """Each span's candidate codes (gold form), best first."""
    return [[gold_form(c.code) for c in item.candidates] for item in retrieved.items]


def stage_seconds(runs: Iterable[CaseRun]) -> dict[str, float]:
    """Seconds per stage summed over notes (each note's retrieval and coded timings merged)."""
    totals: dict[str, float] = {}
    for run in runs:
        for stage, seconds in {**run.retrieved.timings, **run.coded.timings}.items():
            totals[stage] = totals.get(stage, 0.0) + seconds
    order = {stage: i for i, stage in enumerate(STAGES)}
    return dict(sorted(totals.items(), key=lambda kv: (order.get(kv[0], len(STAGES)), kv[0])))


def verifier_summary(notes: Sequence[CodedNote]) -> VerifierInfo | None:
    """The first note's verifier, with token counts summed over all notes."""
    if not notes:
        return None
    return notes[0].verifier.model_copy(
        update={
            "prompt_tokens": sum(n.verifier.prompt_tokens for n in notes),
            "completion_tokens": sum(n.verifier.completion_tokens for n in notes),
        }
    )


def _case_result(run: CaseRun) -> CaseResult:
    predicted = ranked_results(run.coded.codes)
    gold = list(run.case.gold)
    ap = metrics.average_precision([r.code for r in predicted], gold) if gold else None
    return CaseResult(
        case_id=run.case.case_id,
        gold=gold,
        predicted=predicted,
        average_precision=ap,
        seconds=run.seconds,
    )


def _recalls(
    candidates: Mapping[str, Sequence[Sequence[str]]], gold: Mapping[str, Sequence[str]]
) -> list[CandidateRecall]:
    return [
        CandidateRecall(
            k=k,
            exact=metrics.candidate_recall(candidates, gold, k, level="exact"),
            category=metrics.candidate_recall(candidates, gold, k, level="category"),
        )
        for k in RECALL_KS
    ]


def build_report(
    runs: Sequence[CaseRun],
    *,
    catalogue_version: str,
    wall_seconds: float,
    is_valid: Callable[[str], bool] = metrics.always_valid,
    is_code: Callable[[str], bool] = metrics.always_valid,
    split: str = "",
    lang: str = "",
) -> EvalReport:
    """Score pipeline outputs against their cases' gold codes (no IO)."""
    results = [_case_result(run) for run in runs]
    # MAP scores the whole ranked list (accepted codes, then review suggestions), as a
    # CodiEsp-D run file is scored; P/R/F1 score what the system asserts: accepted codes.
    ranked = {r.case_id: [p.code for p in r.predicted] for r in results}
    asserted = {r.case_id: [p.code for p in r.predicted if p.decision == "accept"] for r in results}
    gold = {r.case_id: r.gold for r in results}
    candidates = {run.case.case_id: candidate_lists(run.retrieved) for run in runs}
    micro = metrics.micro_confusion(asserted, gold)
    macro = metrics.macro_prf(asserted, gold)
    invalid = metrics.invalid_gold(gold, is_valid)
    return EvalReport(
        split=split,
        lang=lang,
        catalogue_version=catalogue_version,
        pack=runs[0].coded.pack if runs else "",
        verifier=verifier_summary([run.coded for run in runs]),
        cases=len(results),
        gold_cases=sum(1 for codes in gold.values() if codes),
        gold_pairs=metrics.gold_pairs(gold),
        invalid_gold_pairs=len(invalid),
        invalid_gold_codes=metrics.unique(invalid),
        predicted_pairs=sum(len(codes) for codes in asserted.values()),
        map=metrics.mean_average_precision(ranked, gold),
        map_predicted_cases=metrics.mean_average_precision(ranked, gold, predicted_cases_only=True),
        map_edition_mapped=metrics.mean_average_precision(
            metrics.edition_mapped(ranked, gold, is_code), gold
        ),
        older_edition_gold_pairs=sum(
            1 for codes in gold.values() for code in set(codes) if not is_code(code)
        ),
        micro=MicroScores(
            precision=micro.precision,
            recall=micro.recall,
            f1=micro.f1,
            tp=micro.tp,
            fp=micro.fp,
            fn=micro.fn,
        ),
        macro=Scores(precision=macro.precision, recall=macro.recall, f1=macro.f1),
        macro_labels=len(metrics.label_confusions(asserted, gold)),
        candidate_recall=_recalls(candidates, gold),
        stage_seconds=stage_seconds(runs),
        wall_seconds=wall_seconds,
        notes_per_second=len(results) / wall_seconds if wall_seconds > 0 else 0.0,
        predictions=results,
    )


def report_paths(out_dir: Path, split: str) -> tuple[Path, Path]:
    """``<out>/eval-<split>.json`` and ``<out>/predictions-<split>.tsv``."""
    name = split or "run"
    return out_dir / f"eval-{name}.json", out_dir / f"predictions-{name}.tsv"


def write_outputs(report: EvalReport, out_dir: Path) -> tuple[Path, Path]:
    """Write the JSON report and the CodiEsp-D run file; returns their paths."""
    json_path, tsv_path = report_paths(out_dir, report.split)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path.write_text(report.model_dump_json(indent=2) + "\n", encoding="utf-8")
    tsv_path.write_text(format_predictions(report.ranked()), encoding="utf-8")
    return json_path, tsv_path
