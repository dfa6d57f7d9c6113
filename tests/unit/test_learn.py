"""``icdcoder learn``: document-level codes aligned to spans (fake encoder and segmenter)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from icdcoder.cli import main
from icdcoder.shared.catalogue import Catalogue, CodeInfo
from icdcoder.training.corpus import CodedCase
from icdcoder.training.learn import (
    AlignOptions,
    LearnError,
    LearnStats,
    NoteSpans,
    align_cases,
    best_spans,
    coded_cases,
    learn,
    read_codes,
)
from tests.fakes import HashingEncoder, sentence_segmenter


def info(code: str, description: str, *terms: str) -> CodeInfo:
    return CodeInfo(code, description, True, None, (), "", "", inclusion_terms=terms)


CATALOGUE = Catalogue(
    version="test",
    codes={
        "R59.9": info("R59.9", "Enlarged lymph nodes, unspecified", "Lymphadenopathy NOS"),
        "I10": info("I10", "Essential (primary) hypertension", "high blood pressure"),
        "E11.9": info("E11.9", "Type 2 diabetes mellitus without complications"),
        "R52": info("R52", "Pain, unspecified"),
    },
)


class SentenceSegmenter:
    """One span per sentence (``.``-separated)."""

    segment = staticmethod(sentence_segmenter())


def test_read_codes_keeps_order_drops_repeats_and_names_a_bad_line(tmp_path: Path) -> None:
    good = tmp_path / "codes.tsv"
    good.write_text("a\tr59.9\na\ti10\n\na\tr59.9\nb\te119\n")
    assert read_codes(good) == {"a": ["r59.9", "i10"], "b": ["e119"]}
    bad = tmp_path / "bad.tsv"
    bad.write_text("a\tr59.9\nb r52\n")
    with pytest.raises(LearnError, match=r"bad\.tsv:2: expected 'id<TAB>code'"):
        read_codes(bad)
    with pytest.raises(LearnError, match="not found"):
        read_codes(tmp_path / "missing.tsv")


def test_coded_cases_normalise_codes_count_unknown_ones_and_refuse_unknown_ids() -> None:
    stats = LearnStats()
    notes = [("b", "Pain."), ("a", "Hypertension."), ("c", "No codes here.")]
    cases = coded_cases(notes, {"a": ["i10", "Z99.999", "I10"], "b": ["xyz"]}, CATALOGUE, stats)
    # sorted by id; "b" has no catalogue code left, "c" no codes at all
    assert cases == [CodedCase("a", "Hypertension.", ("I10",))]
    assert (stats.notes, stats.codes, stats.not_in_catalogue) == (1, 4, 2)
    assert stats.dropped_codes == ["Z99.999", "xyz"]
    with pytest.raises(LearnError, match=r"1 id\(s\) of the codes file have no note.*'zz'"):
        coded_cases(notes, {"a": ["i10"], "zz": ["r52"]}, CATALOGUE, LearnStats())


def test_best_spans_floor_and_second_span() -> None:
    options = AlignOptions(floor=0.3, second_margin=0.05, max_spans=2)
    sims = np.array([0.2, 0.61, 0.58, 0.6], np.float32)
    assert best_spans(sims, options) == [1, 3]  # 0.58 is within 0.05 too, but two at most
    assert best_spans(np.array([0.5, 0.4], np.float32), options) == [0]
    assert best_spans(np.array([0.29, 0.1], np.float32), options) == []
    # a second span must reach the floor as well as the margin
    assert best_spans(np.array([0.32, 0.29], np.float32), options) == [0]
    assert best_spans(np.array([], np.float32), options) == []


def test_learn_aligns_each_code_to_the_span_that_says_it() -> None:
    case = CodedCase(
        "n1",
        "The patient has type 2 diabetes. Blood pressure is high. Enlarged nodes in the neck.",
        ("E11.9", "I10", "R59.9"),
    )
    result = learn(
        [case],
        catalogue=CATALOGUE,
        segmenter=SentenceSegmenter(),
        encoder=HashingEncoder(),
        source="arch",
        options=AlignOptions(floor=0.2, second_margin=0.0, max_spans=1, rounds=1),
    )
    pairs = {(e.code, e.text) for e in result.examples}
    assert pairs == {
        ("E11.9", "The patient has type 2 diabetes"),
        ("I10", "Blood pressure is high"),
        ("R59.9", "Enlarged nodes in the neck"),
    }
    assert {e.source for e in result.examples} == {"arch:n1"}
    assert [(n.codes, n.source) for n in result.notes] == [(case.codes, "arch:n1")]
    assert (result.stats.aligned, result.stats.below_floor, result.stats.examples) == (3, 0, 3)


def test_a_code_the_note_does_not_say_is_counted_below_the_floor_not_forced() -> None:
    case = CodedCase("n1", "Blood pressure is high. The weather was fine.", ("I10", "R52"))
    result = learn(
        [case],
        catalogue=CATALOGUE,
        segmenter=SentenceSegmenter(),
        encoder=HashingEncoder(),
        source="arch",
        options=AlignOptions(floor=0.2, rounds=1),
    )
    assert [(e.code, e.text) for e in result.examples] == [("I10", "Blood pressure is high")]
    assert (result.stats.aligned, result.stats.below_floor) == (1, 1)
    # the note is still a coded note with both codes (the similar-notes vote)
    assert result.notes[0].codes == ("I10", "R52")


def vec(*values: float) -> npt.NDArray[np.float32]:
    v = np.array(values, np.float32)
    return v / np.linalg.norm(v)


def test_a_second_round_learns_an_archive_convention_from_other_notes() -> None:
    """Note c says R52 only as "soreness", far from the catalogue's text; note b's "mild pain",
    aligned in round one, is near it, so round two aligns c through b."""
    catalogue_r52 = np.stack([vec(1, 0, 0)])
    spans = {
        # "pain" is near the catalogue; "soreness" is near "sore" in note b only
        "a": NoteSpans(("pain", "weather"), np.stack([vec(1, 0.1, 0), vec(0, 0, 1)])),
        "b": NoteSpans(("mild pain", "soreness"), np.stack([vec(1, 0.7, 0), vec(0.2, 1, 0)])),
        "c": NoteSpans(("soreness again", "weather"), np.stack([vec(0.2, 1, 0), vec(0, 0, 1)])),
    }
    cases = [CodedCase(k, "text", ("R52",)) for k in spans]
    one = AlignOptions(floor=0.5, second_margin=0.0, max_spans=1, rounds=1)
    first = align_cases(cases, spans, {"R52": catalogue_r52}, source="s", options=one)
    # c's "soreness" is 0.196 from the catalogue text: below the floor in round one
    assert {(e.source, e.text) for e in first.examples} == {("s:a", "pain"), ("s:b", "mild pain")}
    two = AlignOptions(floor=0.5, second_margin=0.0, max_spans=1, rounds=2)
    second = align_cases(cases, spans, {"R52": catalogue_r52}, source="s", options=two)
    # round two: b's "mild pain" (1, 0.7, 0) is near c's "soreness again" (0.2, 1, 0): 0.72
    assert ("s:c", "soreness again") in {(e.source, e.text) for e in second.examples}
    assert second.stats.below_floor == 0


def test_a_note_cannot_vouch_for_itself_in_the_second_round() -> None:
    """Own-case examples are left out: a note's round-one span never lifts its own score."""
    catalogue_r52 = np.stack([vec(1, 0, 0)])
    spans = {"a": NoteSpans(("sore",), np.stack([vec(0.6, 1, 0)]))}
    cases = [CodedCase("a", "text", ("R52",))]
    options = AlignOptions(floor=0.5, second_margin=0.0, max_spans=1, rounds=2)
    result = align_cases(cases, spans, {"R52": catalogue_r52}, source="s", options=options)
    assert [e.text for e in result.examples] == ["sore"]  # 0.51: aligned on its own merit
    low = {"a": NoteSpans(("sore",), np.stack([vec(0.4, 1, 0)]))}
    result = align_cases(cases, low, {"R52": catalogue_r52}, source="s", options=options)
    assert result.examples == () and result.stats.below_floor == 1


def learn_argv(tmp_path: Path, codes_text: str) -> list[str]:
    """``icdcoder learn`` over one note ("a.txt") and a codes file holding ``codes_text``."""
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.txt").write_text("Blood pressure is high.")
    codes = tmp_path / "codes.tsv"
    codes.write_text(codes_text)
    out = str(tmp_path / "out")
    return ["learn", "--notes", str(notes), "--codes", str(codes), "--out", out, "--name", "p"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--name", "Bad Name"], "pack name 'Bad Name'"),
        (["--codes", "MISSING"], "codes file not found"),
        (["--notes", "MISSING"], "notes not found"),
        (["--index-csv", "MISSING"], "alphabetic index not found"),
    ],
)
def test_learn_refuses_bad_arguments_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    argv = learn_argv(tmp_path, "a\ti10\n")
    replaced = [str(tmp_path / a) if a == "MISSING" else a for a in extra]
    assert main([*argv, *replaced]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_learn_refuses_a_codes_file_for_other_notes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(learn_argv(tmp_path, "b\ti10\n")) == 2
    err = capsys.readouterr().err
    assert "have no note (e.g. 'b')" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_train_takes_notes_only_with_codes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", "--notes", str(tmp_path), "--out", str(tmp_path / "p"), "--name", "p"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--notes and --codes go together" in err and err.count("\n") == 1


def test_archive_corpus_reads_notes_and_codes_in_catalogue_form(tmp_path: Path) -> None:
    from icdcoder.commands.learn import archive_corpus

    notes = tmp_path / "notes.jsonl"
    notes.write_text('{"id": "a", "text": "Pain."}\n{"id": "b", "text": "High blood pressure."}\n')
    codes = tmp_path / "codes.tsv"
    codes.write_text("b\ti10\na\tr52\n")
    corpus = archive_corpus(str(notes), codes, CATALOGUE)
    assert [(c.case_id, c.codes) for c in corpus.cases()] == [("a", ("R52",)), ("b", ("I10",))]
    assert corpus.description == "notes.jsonl coded by codes.tsv" and not corpus.reported
