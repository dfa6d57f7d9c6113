"""The CodiEsp reader, the evaluation report on real dev cases with a fake pipeline, the CLI."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from icdcoder.codiesp import (
    CodiEspCase,
    CodiEspError,
    format_predictions,
    parse_gold,
    read_split,
)
from icdcoder.commands import eval as eval_command
from icdcoder.evaluate import CaseRun, EvalReport, build_report, evaluate, write_outputs
from icdcoder.metrics import always_valid
from icdcoder.shared.messages import (
    Candidate,
    CodedNote,
    CodeResult,
    NoteIn,
    RetrievedNote,
    Span,
    SpanCandidates,
    VerifierInfo,
)

CODIESP = Path(__file__).resolve().parents[2].parent / "shared/data/codiesp"

# The first three dev cases by id, and their CodiEsp-D gold (12, 27 and 10 codes).
CASE_A = "S0004-06142005000900016-1"
CASE_B = "S0004-06142005001000011-1"
CASE_C = "S0004-06142006000200011-1"
GOLD_C = ["r52", "f17.200", "r50.9", "f12.10", "d49.59", "l98.9", "n50.9", "d29.8", "n28.89"]
GOLD_C += ["r69"]


# --- a fake pipeline ------------------------------------------------------------------------

SEGMENTED = {"segmenter": 0.1, "retriever": 0.2}
CODED = {**SEGMENTED, "verifier": 0.3, "aggregator": 0.05}


@dataclass
class FakePipeline:
    """Answers each note with fixed (code, confidence) pairs and fixed span candidates."""

    answers: dict[str, list[tuple[str, float]]]
    candidates: dict[str, list[list[str]]] = field(default_factory=dict)
    catalogue_version: str = "test-catalogue"
    seen: list[str] = field(default_factory=list)

    async def code_note(self, note: NoteIn) -> tuple[CodedNote, RetrievedNote]:
        self.seen.append(note.note_id)
        codes = [_result(code, conf) for code, conf in self.answers.get(note.note_id, [])]
        coded = CodedNote(
            note_id=note.note_id,
            catalogue_version=self.catalogue_version,
            codes=codes,
            excluded=[],
            verifier=VerifierInfo(backend="fake", prompt_tokens=10, completion_tokens=2),
            timings=CODED,
        )
        items = [
            _span_candidates(note, i, c)
            for i, c in enumerate(self.candidates.get(note.note_id, []))
        ]
        retrieved = RetrievedNote(
            note_id=note.note_id,
            text=note.text,
            catalogue_version=self.catalogue_version,
            items=items,
            timings=SEGMENTED,
        )
        return coded, retrieved


def _result(code: str, confidence: float) -> CodeResult:
    return CodeResult(
        code=code,
        description="",
        confidence=confidence,
        decision="accept",
        justification="",
        evidence=[],
    )


def _span_candidates(note: NoteIn, index: int, codes: Sequence[str]) -> SpanCandidates:
    span = Span(
        span_id=f"s{index:04d}",
        start=0,
        end=1,
        text=note.text[0],
        sentence_start=0,
        sentence_end=1,
    )
    found = [
        Candidate(code=c, description="", score=1.0 - i / 100, matched="")
        for i, c in enumerate(codes)
    ]
    return SpanCandidates(span=span, candidates=found)


# --- parsing gold ---------------------------------------------------------------------------


def test_parse_gold_normalises_drops_duplicates_and_blank_lines() -> None:
    lines = ["c1\tE11.9", "c1\te119", "", "c1\tn23", "c2\ti10\n"]
    assert parse_gold(lines) == {"c1": ("e11.9", "n23"), "c2": ("i10",)}


@pytest.mark.parametrize(
    ("line", "problem"),
    [("c1 e11.9", "expected 'id<TAB>code'"), ("c1\tdiabetes", "not an ICD-10-CM code")],
)
def test_parse_gold_names_the_bad_line(line: str, problem: str) -> None:
    with pytest.raises(CodiEspError, match=f"devD.tsv:2: {problem}"):
        parse_gold(["c0\ti10", line], source="devD.tsv")


# --- reading a split ------------------------------------------------------------------------


def make_split(root: Path, texts: dict[str, str], gold: str, split: str = "dev") -> Path:
    folder = root / split / "text_files_en"
    folder.mkdir(parents=True)
    for case_id, text in texts.items():
        (folder / f"{case_id}.txt").write_text(text, encoding="utf-8")
    (root / split / f"{split}D.tsv").write_text(gold, encoding="utf-8")
    return root


def test_read_split_sorted_with_gold_and_limit(tmp_path: Path) -> None:
    data = make_split(
        tmp_path,
        {"c2": "Hypertension.", "c1": "Diabetes.", "c3": "No findings."},
        "c2\ti10\nc1\te11.9\nc1\tn23\n",
    )
    cases = read_split(data, "dev")
    assert cases == [
        CodiEspCase("c1", "Diabetes.", ("e11.9", "n23")),
        CodiEspCase("c2", "Hypertension.", ("i10",)),
        CodiEspCase("c3", "No findings.", ()),
    ]
    assert [c.case_id for c in read_split(data, "dev", limit=2)] == ["c1", "c2"]
    assert cases[0].note() == NoteIn(note_id="c1", text="Diabetes.")


@pytest.mark.parametrize(
    ("split", "lang", "message"),
    [
        ("test", "en", r"split 'test' not found in .* \(splits there: dev\)"),
        ("dev", "es", "no 'es' texts for split 'dev'"),
    ],
)
def test_read_split_missing_folders(tmp_path: Path, split: str, lang: str, message: str) -> None:
    data = make_split(tmp_path, {"c1": "x"}, "c1\ti10\n")
    with pytest.raises(CodiEspError, match=message):
        read_split(data, split, lang=lang)  # type: ignore[arg-type]


def test_read_split_problems(tmp_path: Path) -> None:
    with pytest.raises(CodiEspError, match="CodiEsp data folder not found"):
        read_split(tmp_path / "nowhere", "dev")
    data = make_split(tmp_path, {"c1": "text"}, "c1\ti10\nc9\tn23\n")
    with pytest.raises(CodiEspError, match=r"1 gold case\(s\) have no text .* e\.g\. c9"):
        read_split(data, "dev")
    with pytest.raises(CodiEspError, match="limit must be at least 1"):
        read_split(data, "dev", limit=0)
    (data / "dev" / "devD.tsv").unlink()
    with pytest.raises(CodiEspError, match="gold standard not found"):
        read_split(data, "dev")


def test_read_split_rejects_an_empty_case(tmp_path: Path) -> None:
    data = make_split(tmp_path, {"c1": " \n"}, "c1\ti10\n")
    with pytest.raises(CodiEspError, match=r"c1\.txt: the case text is empty"):
        read_split(data, "dev")


def test_format_predictions() -> None:
    ranked = {"c1": ["e11.9", "I10", "e11.9"], "c2": [], "c3": ["n23"]}
    assert format_predictions(ranked) == "c1\te11.9\nc1\ti10\nc3\tn23\n"


# --- real dev cases -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dev_cases() -> list[CodiEspCase]:
    if not (CODIESP / "dev").is_dir():
        pytest.skip(f"CodiEsp data not found: {CODIESP}")
    return read_split(CODIESP, "dev", limit=3)


def test_read_real_dev_cases(dev_cases: list[CodiEspCase]) -> None:
    assert [c.case_id for c in dev_cases] == [CASE_A, CASE_B, CASE_C]
    assert [len(c.gold) for c in dev_cases] == [12, 27, 10]
    assert list(dev_cases[2].gold) == GOLD_C
    assert dev_cases[0].text.startswith("A 29-year-old woman")
    spanish = read_split(CODIESP, "dev", lang="es", limit=1)[0]
    assert spanish.gold == dev_cases[0].gold and spanish.text != dev_cases[0].text


def dev_pipeline() -> FakePipeline:
    """A: one gold code, a wrong one, another gold code; B: nothing; C: all its gold, in order."""
    return FakePipeline(
        answers={
            CASE_A: [("Q62.11", 0.9), ("Z00.00", 0.8), ("N28.89", 0.7)],
            CASE_C: [(code, 0.95 - i * 0.05) for i, code in enumerate(GOLD_C)],
        },
        candidates={
            CASE_A: [["Q62.12", "Q62.11"], ["N20.0"]],
            CASE_C: [["R52", "A00.0", "A01.0", "A02.0", "A03.0", "A04.0", "A05.0", "F17.200"]],
        },
    )


async def test_evaluate_real_dev_cases_by_hand(dev_cases: list[CodiEspCase]) -> None:
    pipeline = dev_pipeline()
    report = await evaluate(
        pipeline,
        dev_cases,
        progress=False,
        is_valid=lambda code: code != "n28.89",
        split="dev",
        lang="en",
    )
    assert pipeline.seen == [CASE_A, CASE_B, CASE_C]
    assert (report.cases, report.gold_cases, report.gold_pairs) == (3, 3, 49)
    assert report.predicted_pairs == 13
    # n28.89 is gold in A and C: two pairs, kept in every denominator
    assert (report.invalid_gold_pairs, report.invalid_gold_codes) == (2, ["n28.89"])

    # AP: A hits at ranks 1 and 3 of 12 gold -> (1 + 2/3) / 12 = 5/36; B 0; C 1
    assert [c.average_precision for c in report.predictions] == pytest.approx([5 / 36, 0, 1])
    assert report.map == pytest.approx((5 / 36 + 0 + 1) / 3)
    assert report.map_predicted_cases == pytest.approx((5 / 36 + 1) / 2)

    # A: tp2 fp1 fn10; B: fn27; C: tp10
    micro = report.micro
    assert (micro.tp, micro.fp, micro.fn) == (12, 1, 37)
    assert micro.precision == pytest.approx(12 / 13)
    assert micro.recall == pytest.approx(12 / 49)
    assert micro.f1 == pytest.approx(24 / 62)

    # 47 distinct gold labels (n28.89 in A and C, r69 in B and C) + z00.00 = 48 labels.
    # F1 1: q62.11, n28.89 and C's 8 others; r69 (hit in C, missed in B) 2/3; the rest 0.
    assert report.macro_labels == 48
    assert report.macro.f1 == pytest.approx((10 + 2 / 3) / 48)
    assert report.macro.precision == pytest.approx(11 / 48)  # z00.00 has precision 0
    assert report.macro.recall == pytest.approx((10 + 0.5) / 48)  # r69 recall 1/2

    # exact: @1 n20.0 (A), r52 (C); @5 adds q62.11; @20 adds f17.200 (rank 8)
    # category: @1 q62 and n20 (A), r52 (C); @20 adds f17
    recall = {r.k: (r.exact, r.category) for r in report.candidate_recall}
    assert recall == {
        1: pytest.approx((2 / 49, 3 / 49)),
        5: pytest.approx((3 / 49, 3 / 49)),
        20: pytest.approx((4 / 49, 4 / 49)),
    }

    assert report.stage_seconds == pytest.approx(
        {"segmenter": 0.3, "retriever": 0.6, "verifier": 0.9, "aggregator": 0.15}
    )
    assert list(report.stage_seconds) == ["segmenter", "retriever", "verifier", "aggregator"]
    assert report.notes_per_second > 0 and report.wall_seconds > 0
    assert report.verifier == VerifierInfo(backend="fake", prompt_tokens=30, completion_tokens=6)
    assert report.predictions[0].predicted[1].code == "z00.00"


async def test_write_outputs_run_file_and_json(
    dev_cases: list[CodiEspCase], tmp_path: Path
) -> None:
    report = await evaluate(dev_pipeline(), dev_cases, progress=False, split="dev", lang="en")
    json_path, tsv_path = write_outputs(report, tmp_path / "reports")
    assert (json_path.name, tsv_path.name) == ("eval-dev.json", "predictions-dev.tsv")
    expected = [f"{CASE_A}\tq62.11", f"{CASE_A}\tz00.00", f"{CASE_A}\tn28.89"]
    expected += [f"{CASE_C}\t{code}" for code in GOLD_C]
    assert tsv_path.read_text(encoding="utf-8").splitlines() == expected
    assert EvalReport.model_validate_json(json_path.read_text(encoding="utf-8")) == report
    assert json.loads(json_path.read_text(encoding="utf-8"))["invalid_gold_pairs"] == 0


async def test_evaluate_ranks_by_confidence_and_merges_repeated_codes() -> None:
    cases = [CodiEspCase("c1", "text", ("e11.9", "i10"))]
    pipeline = FakePipeline(
        answers={"c1": [("I10", 0.4), ("R51.9", 0.6), ("E11.9", 0.6), ("I10", 0.8)]}
    )
    report = await evaluate(pipeline, cases, progress=False)
    assert [(r.code, r.confidence) for r in report.predictions[0].predicted] == [
        ("i10", 0.8),
        ("e11.9", 0.6),  # tie with r51.9, broken by code
        ("r51.9", 0.6),
    ]
    assert report.map == pytest.approx(1.0)


# --- the command ----------------------------------------------------------------------------


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="icdcoder")
    eval_command.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_eval_command_bad_data_path_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = parse(["eval", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r")])
    assert args.handler(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "CodiEsp data folder not found" in err
    assert "Traceback" not in err


def test_eval_command_out_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = make_split(tmp_path / "codiesp", {"c1": "Diabetes."}, "c1\te11.9\n")
    (tmp_path / "taken").write_text("")
    args = parse(["eval", "--data", str(data), "--out", str(tmp_path / "taken")])
    assert args.handler(args) == 2
    assert "report folder is a file" in capsys.readouterr().err


def test_eval_command_runs_and_writes_reports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = make_split(
        tmp_path / "codiesp", {"c1": "Diabetes.", "c2": "Headache."}, "c1\te11.9\nc2\tr51\n"
    )
    answers = {"c1": [("E11.9", 0.9)], "c2": [("R51.9", 0.8)]}  # R51 is a category now
    pipeline = FakePipeline(answers=answers, candidates={"c1": [["E11.9"]]})
    is_code = lambda code: code != "r51"  # noqa: E731
    monkeypatch.setattr(eval_command, "build", lambda settings: (pipeline, always_valid, is_code))
    out = tmp_path / "reports"
    args = parse(["eval", "--data", str(data), "--split", "dev", "--limit", "2"])
    args.out, args.no_progress = out, True
    assert args.handler(args) == 0
    printed = capsys.readouterr().out
    assert "MAP                0.5000" in printed  # c1 AP 1, c2 AP 0
    assert "MAP, edition-mapped 1.0000  (a prediction under one of the 1 gold" in printed
    assert "micro P / R / F1   0.5000 / 0.5000 / 0.5000" in printed
    assert (out / "predictions-dev.tsv").read_text() == "c1\te11.9\nc2\tr51.9\n"
    assert json.loads((out / "eval-dev.json").read_text())["cases"] == 2


def test_eval_command_rejects_a_non_positive_limit(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse(["eval", "--data", "x", "--limit", "0"])
    assert exit_info.value.code == 2
    assert "must be at least 1" in capsys.readouterr().err


def test_review_codes_are_ranked_for_map_but_not_asserted() -> None:
    case = CodiEspCase("c1", "text", ("e11.9", "i10"))
    review = _result("I10", 0.3).model_copy(update={"decision": "review"})
    coded = CodedNote(
        note_id="c1",
        catalogue_version="t",
        codes=[_result("R51.9", 0.9), review],
        excluded=[],
        verifier=VerifierInfo(backend="fake"),
    )
    retrieved = RetrievedNote(note_id="c1", text="text", catalogue_version="t", items=[])
    report = build_report(
        [CaseRun(case, coded, retrieved, 0.1)], catalogue_version="t", wall_seconds=1
    )
    assert report.map == pytest.approx((1 / 2) / 2)  # i10, a hit, ranked second
    assert (report.micro.tp, report.micro.fp, report.micro.fn) == (0, 1, 2)  # only R51.9 asserted
