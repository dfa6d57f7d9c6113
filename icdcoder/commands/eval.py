"""``icdcoder eval``: score the in-process pipeline on a CodiEsp split (CodiEsp-D).

Prints a compact table of the metrics and writes ``<out>/eval-<split>.json`` (the full report)
and ``<out>/predictions-<split>.tsv`` (a run file the official CodiEsp script accepts).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path

from icdcoder.codiesp import TEXT_DIRS, CodiEspCase, CodiEspError, read_split
from icdcoder.commands.options import add_pipeline_options, fail, load_settings, positive_int
from icdcoder.evaluate import CodingPipeline, EvalReport, evaluate, write_outputs
from icdcoder.shared.settings import Settings


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="score the pipeline on a CodiEsp split (MAP, F1, candidate recall)",
        description="Code every case of a CodiEsp split and score the codes against its "
        "CodiEsp-D gold standard. See docs/evaluation.md for the metrics.",
    )
    parser.add_argument(
        "--data", type=Path, required=True, help="CodiEsp folder holding train/, dev/, ..."
    )
    parser.add_argument("--split", default="dev", help="split folder to score (default dev)")
    parser.add_argument(
        "--lang",
        choices=sorted(TEXT_DIRS),
        default="en",
        help="en: the English machine translation (default); es: the Spanish originals",
    )
    parser.add_argument("--limit", type=positive_int, help="score only the first N cases")
    parser.add_argument(
        "--out", type=Path, default=Path("reports"), help="report folder (default reports/)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    add_pipeline_options(parser)
    parser.set_defaults(handler=run)


def _prepare_out(out: Path) -> str | None:
    """Create the report folder; a one-line problem, or None."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        return f"report folder is a file: {out}"
    except OSError as exc:
        return f"cannot create report folder {out}: {exc.strerror or exc}"
    return None


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    try:
        cases = read_split(args.data, args.split, lang=args.lang, limit=args.limit)
    except CodiEspError as exc:
        return fail(str(exc))
    problem = _prepare_out(args.out)
    if problem:
        return fail(problem)
    report = asyncio.run(_evaluate(cases, args, settings))
    print(summary(report))
    try:
        json_path, tsv_path = write_outputs(report, args.out)
    except OSError as exc:
        return fail(f"cannot write the report to {args.out}: {exc.strerror or exc}")
    print(f"wrote {json_path} and {tsv_path}")
    return 0


def build(
    settings: Settings,
) -> tuple[CodingPipeline, Callable[[str], bool], Callable[[str], bool]]:
    """The pipeline, and the catalogue's tests for gold codes: is it in the catalogue, can it
    be assigned in this edition (one catalogue load)."""
    from icdcoder.bootstrap import build_pipeline

    pipeline = build_pipeline(settings)
    return pipeline, pipeline.catalogue.is_valid, pipeline.catalogue.is_leaf


async def _evaluate(
    cases: Sequence[CodiEspCase], args: argparse.Namespace, settings: Settings
) -> EvalReport:
    pipeline, is_valid, is_code = build(settings)
    return await evaluate(
        pipeline,
        cases,
        progress=not args.no_progress,
        is_valid=is_valid,
        is_code=is_code,
        split=args.split,
        lang=args.lang,
    )


def summary(report: EvalReport) -> str:
    """The compact metrics table printed after a run."""
    verifier = report.verifier.backend if report.verifier else "none"
    with_predictions = sum(1 for case in report.predictions if case.gold and case.predicted)
    micro, macro = report.micro, report.macro
    invalid_share = report.invalid_gold_pairs / report.gold_pairs if report.gold_pairs else 0.0
    stages = " | ".join(f"{name} {sec:.2f}" for name, sec in report.stage_seconds.items())
    lines = [
        f"CodiEsp-D {report.split} ({report.lang}): {report.cases:,} cases, "
        f"catalogue {report.catalogue_version}, pack {report.pack or 'none'}, verifier {verifier}",
        f"  MAP                {report.map:.4f}   "
        f"({report.map_predicted_cases:.4f} over the {with_predictions:,} gold cases "
        "with predictions)",
        f"  MAP, edition-mapped {report.map_edition_mapped:.4f}  "
        f"(a prediction under one of the {report.older_edition_gold_pairs:,} gold pairs whose "
        f"code {report.catalogue_version} cannot assign counts as it: docs/evaluation.md)",
        f"  micro P / R / F1   {micro.precision:.4f} / {micro.recall:.4f} / {micro.f1:.4f}   "
        f"(tp {micro.tp:,}, fp {micro.fp:,}, fn {micro.fn:,})",
        f"  macro P / R / F1   {macro.precision:.4f} / {macro.recall:.4f} / {macro.f1:.4f}   "
        f"({report.macro_labels:,} labels)",
        "  candidate recall   exact   category",
        *(f"    @{r.k:<16}{r.exact:.4f}  {r.category:.4f}" for r in report.candidate_recall),
        f"  gold codes         {report.gold_pairs:,} (case, code) pairs, "
        f"{report.invalid_gold_pairs:,} not in the catalogue ({invalid_share:.1%})",
        f"  speed              {report.notes_per_second:.2f} notes/s, "
        f"{report.wall_seconds:.1f} s wall",
        f"  stage seconds      {stages or 'none reported'}",
    ]
    return "\n".join(lines)
