"""The example memory: file format, retrieval merge, verifier features, CodiEsp alignment."""

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from icdcoder.memory_codiesp import GoldEvidence, align, line_starts, read_x
from icdcoder.services.retriever.core import (
    ExampleIndex,
    IndexRows,
    Retriever,
    Vectors,
    memory_hits,
    merge_memory,
)
from icdcoder.services.verifier.justify import justify
from icdcoder.services.verifier.span_model import (
    FEATURES,
    SpanWeights,
    features,
    note_support,
    span_features,
)
from icdcoder.shared.catalogue import Catalogue, CodeInfo
from icdcoder.shared.memory import (
    Example,
    ExampleMemoryError,
    MemoryNote,
    load_memory,
    read_examples,
    write_examples,
)
from icdcoder.shared.messages import Candidate, RetrievedNote, SegmentedNote, SpanCandidates
from icdcoder.training.retrieval import as_searched
from tests.fakes import HashingEncoder, NumpyIndex, make_span
from tests.unit.test_retriever_core import DESCRIPTIONS, ROWS


def info(code: str, description: str) -> CodeInfo:
    return CodeInfo(code, description, True, None, (), "", "")


CATALOGUE = Catalogue(
    version="test",
    codes={
        "R59.9": info("R59.9", "Enlarged lymph nodes, unspecified"),
        "R52": info("R52", "Pain, unspecified"),
    },
)


def test_memory_file_round_trip_and_codes_from_the_catalogue(tmp_path: Path) -> None:
    path = tmp_path / "memory.jsonl"
    written = write_examples(
        path,
        [
            Example(code="r59.9", text="multiple adenopathies", source="case-1"),
            Example(code="R52", text="painful", source="case-2"),
            Example(code="Z99.99", text="retired code", source="case-3"),
        ],
    )
    assert written == 3
    loaded = load_memory(path, CATALOGUE)
    assert [e.code for e in loaded.examples] == ["R59.9", "R52"]  # normalised to the catalogue
    assert loaded.dropped_codes == ("Z99.99",)


def test_coded_notes_share_the_memory_file_and_keep_only_catalogue_codes(tmp_path: Path) -> None:
    path = tmp_path / "memory.jsonl"
    write_examples(
        path,
        [
            Example(code="R52", text="painful", source="case-2"),
            MemoryNote(codes=("r52", "Z99.99", "R52"), text="Pain all over.", source="case-2"),
            MemoryNote(codes=("Z99.99",), text="Only a retired code.", source="case-3"),
        ],
    )
    loaded = load_memory(path, CATALOGUE)
    assert [e.code for e in loaded.examples] == ["R52"]
    assert [(n.codes, n.source) for n in loaded.notes] == [(("R52",), "case-2")]
    assert loaded.dropped_codes == ("Z99.99",)
    assert [type(e) for e in read_examples(path)] == [Example]


def test_similar_notes_vote_with_their_codes_and_can_leave_one_out() -> None:
    from icdcoder.services.verifier.similar_notes import SimilarNotes

    notes = [
        MemoryNote(codes=("N20.0",), text="Renal colic from a kidney stone.", source="a"),
        MemoryNote(codes=("N20.0", "R31.9"), text="Kidney stone with hematuria.", source="b"),
        MemoryNote(codes=("J18.9",), text="Cough, fever and pneumonia.", source="c"),
    ]
    similar = SimilarNotes(notes, neighbours=2)
    votes = similar.votes("A stone in the left kidney, and hematuria.")
    assert votes["N20.0"] == pytest.approx(1.0)  # both nearest notes carry it
    assert 0 < votes["R31.9"] < 1 and "J18.9" not in votes
    assert "R31.9" not in similar.votes("Kidney stone with hematuria.", exclude_source="b")
    assert similar.votes("Nothing in common here.") == {}
    with pytest.raises(ValueError):
        SimilarNotes([])


def test_note_classifier_learns_codes_carried_by_enough_notes() -> None:
    from icdcoder.services.verifier.note_classifier import BOUND, NoteClassifier

    kidney = "Renal colic from a kidney stone, hematuria on urinalysis."
    notes = [
        MemoryNote(codes=("N20.0",), text=kidney, source="a"),
        MemoryNote(codes=("N20.0", "R31.9"), text="Kidney stone with hematuria.", source="b"),
        MemoryNote(codes=("J18.9",), text="Cough, fever and pneumonia.", source="c"),
        MemoryNote(codes=("J18.9",), text="Pneumonia with fever and cough.", source="d"),
    ]
    classifier = NoteClassifier(notes, min_notes=2)
    # R31.9 is carried by one note only: no model, so no vote
    assert classifier.codes == ["J18.9", "N20.0"] and len(classifier) == 2
    kidney_votes = classifier.votes("A kidney stone and hematuria.")
    lung_votes = classifier.votes("Fever, cough: pneumonia.")
    assert kidney_votes["N20.0"] > 0 > kidney_votes["J18.9"]
    assert lung_votes["J18.9"] > 0 > lung_votes["N20.0"]
    assert all(abs(v) <= BOUND for v in (*kidney_votes.values(), *lung_votes.values()))
    # a code every note carries has nothing to learn from
    assert NoteClassifier([MemoryNote(codes=("I10",), text="Hypertension.")]).votes("x") == {}
    with pytest.raises(ValueError):
        NoteClassifier([])


def test_malformed_memory_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "memory.jsonl"
    good = json.dumps({"code": "R52", "text": "pain"})
    path.write_text(f"{good}\n\n{json.dumps({'code': 'R52'})}\n")
    with pytest.raises(ExampleMemoryError, match=r"memory.jsonl:3: not a memory example"):
        read_examples(path)
    with pytest.raises(ExampleMemoryError, match="not found"):
        read_examples(tmp_path / "missing.jsonl")


def test_memory_hits_vote_and_keep_the_nearest_example() -> None:
    rows = IndexRows(codes=["R52", "R59.9", "R52", "R52"], texts=["pain", "nodes", "ache", "x"])
    hits = memory_hits([0.9, 0.8, 0.95, 0.1], [0, 1, 2, -1], rows)
    assert hits == {"R52": (0.95, 2, "ache"), "R59.9": (0.8, 1, "nodes")}


def test_merge_annotates_known_codes_and_adds_memory_only_codes() -> None:
    known = Candidate(code="I10", description="Hypertension", score=0.7, matched="HTN")
    merged = merge_memory(
        [known],
        {"I10": (0.6, 3, "hta"), "R59.9": (0.9, 2, "adenopathies"), "ZZZ": (0.99, 1, "?")},
        {"I10": "Hypertension", "R59.9": "Enlarged lymph nodes, unspecified"},
    )
    assert [c.code for c in merged] == ["R59.9", "I10"]  # ZZZ: not in the catalogue
    assert merged[0].score == 0.0 and merged[0].memory_votes == 2 and merged[0].matched == ""
    assert merged[1].score == 0.7 and merged[1].memory_votes == 3 and merged[1].example == "hta"


def memory_retriever(
    encoder: HashingEncoder, examples: IndexRows, *, search_ruled_out: bool = False
) -> Retriever:
    """A retriever over ROWS whose memory holds ``examples``, each one a neighbour."""
    index = NumpyIndex(encoder.encode(examples.texts))
    return Retriever(
        encoder,
        NumpyIndex(encoder.encode(ROWS.texts)),
        ROWS,
        DESCRIPTIONS,
        catalogue_version="test",
        top_k=2,
        memory=ExampleIndex(index, examples, neighbours=len(examples.texts)),
        search_ruled_out=search_ruled_out,
    )


def test_retriever_searches_the_memory_with_the_span_vector() -> None:
    encoder = HashingEncoder()
    examples = IndexRows(codes=["I10", "I10"], texts=["HTA", "HTA arterial"])
    retriever = memory_retriever(encoder, examples)
    text = "Known HTA."
    note = SegmentedNote(note_id="n1", text=text, spans=[make_span("HTA", text)])
    cands = retriever.retrieve(note).items[0].candidates
    i10 = next(c for c in cands if c.code == "I10")
    assert i10.memory_votes == 2 and i10.memory_score == pytest.approx(1.0)
    assert i10.example == "HTA"
    without = Retriever(
        encoder, NumpyIndex(encoder.encode(ROWS.texts)), ROWS, DESCRIPTIONS, catalogue_version="t"
    )
    assert all(c.memory_votes == 0 for c in without.retrieve(note).items[0].candidates)


class CountingEncoder(HashingEncoder):
    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []

    def encode(self, texts: Sequence[str]) -> Vectors:
        self.texts.extend(texts)
        return super().encode(texts)


@pytest.mark.parametrize("search_ruled_out", [False, True])
def test_spans_no_code_may_come_of_are_not_searched_unless_asked(search_ruled_out: bool) -> None:
    encoder = CountingEncoder()
    examples = IndexRows(codes=["I10"], texts=["HTA"])
    retriever = memory_retriever(encoder, examples, search_ruled_out=search_ruled_out)
    # a hypothetical span is searched: its codes go to review (an uncertain diagnosis)
    text = "No pneumonia. Known HTA. Possible breast cancer. Pneumonia."
    spans = [
        make_span("pneumonia", text, "s0", negated=True),
        make_span("HTA", text, "s1"),
        make_span("breast cancer", text, "s2", hypothetical=True),
        make_span("Pneumonia", text, "s3"),
    ]
    encoder.texts.clear()
    items = retriever.retrieve(SegmentedNote(note_id="n", text=text, spans=spans)).items
    assert [item.span.span_id for item in items] == ["s0", "s1", "s2", "s3"]
    # every span keeps its place; the memory's votes land on the span that was searched
    assert next(c for c in items[1].candidates if c.code == "I10").memory_votes == 1
    assert items[3].candidates[0].code == "J18.9"
    if search_ruled_out:
        assert encoder.texts == ["pneumonia", "HTA", "breast cancer", "Pneumonia"]
        assert items[0].candidates and items[2].candidates
    else:
        assert encoder.texts == ["HTA", "breast cancer", "Pneumonia"]
        assert items[0].candidates == [] and items[2].candidates


def test_training_blanks_the_spans_inference_does_not_search() -> None:
    cand = Candidate(code="J18.9", description="Pneumonia", score=0.9, matched="Pneumonia")
    text = "no pneumonia; pneumonia"
    items = [
        SpanCandidates(span=make_span("no pneumonia", text, "s0", negated=True), candidates=[cand]),
        SpanCandidates(span=make_span("pneumonia", text, "s1"), candidates=[cand]),
    ]
    note = RetrievedNote(note_id="n", text=text, catalogue_version="t", items=items)
    (blanked,) = as_searched([note])
    assert blanked.items[0].candidates == [] and blanked.items[1].candidates == [cand]


def _note(cands_per_span: list[list[Candidate]]) -> RetrievedNote:
    text = " ".join(f"w{i}" for i in range(len(cands_per_span)))
    items = [
        SpanCandidates(span=make_span(f"w{i}", text, f"s{i}"), candidates=cands)
        for i, cands in enumerate(cands_per_span)
    ]
    return RetrievedNote(note_id="n", text=text, catalogue_version="t", items=items)


def test_support_counts_other_spans_and_memory_features_reach_the_score() -> None:
    a = Candidate(code="R52", description="Pain", score=0.5, matched="Pain")
    b = Candidate(code="R10.9", description="Abdominal pain", score=0.4, matched="Abdominal pain")
    note = _note([[a, b], [a], [b]])
    counts = note_support(note.items, considered=10)
    assert counts == {"R52": 2, "R10.9": 2}
    f = dict(zip(FEATURES, features("pain", [a, b], 0, counts), strict=True))
    assert f["support"] == pytest.approx(np.log(2))
    assert f["margin"] == pytest.approx(0.1)
    remembered = a.model_copy(update={"memory_score": 0.9, "memory_votes": 4})
    g = dict(zip(FEATURES, features("pain", [remembered, b], 0, counts), strict=True))
    assert g["memory_score"] == 0.9 and g["memory_votes"] == 4.0
    weights = SpanWeights(memory_votes=1.0)
    plain = weights.confidence(features("pain", [a, b], 0, counts))
    assert weights.confidence(features("pain", [remembered, b], 0, counts)) > plain


def test_margin_is_the_distance_to_the_best_other_candidate_ties_included() -> None:
    def cand(code: str, score: float) -> Candidate:
        return Candidate(code=code, description="Pain", score=score, matched="Pain")

    cands = [cand("A", 0.5), cand("B", 0.7), cand("C", 0.7), cand("D", 0.2)]
    rows = span_features("pain", cands, {})
    margins = [row[FEATURES.index("margin")] for row in rows]
    # B and C tie for first: each stands 0 above the other; the rest stand below the best
    assert margins == pytest.approx([-0.2, 0.0, 0.0, -0.5])
    assert span_features("pain", cands[:1], {})[0][FEATURES.index("margin")] == 0.5
    assert span_features("pain", [], {}) == []


def test_memory_justification_does_not_repeat_another_notes_text() -> None:
    cand = Candidate(
        code="R59.9",
        description="Enlarged lymph nodes, unspecified",
        score=0.0,
        matched="",
        memory_score=0.91,
        memory_votes=3,
        example="adenopathies in Mr Smith's neck",
    )
    text = justify("multiple adenopathies", cand, "accept")
    assert "3 confirmed examples" in text and "0.91" in text
    assert "Smith" not in text


def test_weights_json_needs_the_score_features_and_defaults_the_rest() -> None:
    plain = SpanWeights.from_dict({"bias": -1, "score": 2, "coverage": 3, "margin": 4})
    assert plain.memory_votes == 0.0 and plain.support == 0.0
    with pytest.raises(ValueError, match="lack margin"):
        SpanWeights.from_dict({"bias": -1, "score": 2, "coverage": 3})


def test_read_x_keeps_diagnoses_with_their_first_offset(tmp_path: Path) -> None:
    path = tmp_path / "trainX.tsv"
    path.write_text(
        "c1\tDIAGNOSTICO\tr52\tdolor\t78 85\n"
        "c1\tPROCEDIMIENTO\tbw03zzz\tRx tórax\t2163 2171\n"
        "c1\tDIAGNOSTICO\ta23.9\tBrucella\t607 615;700 708\n"
    )
    assert read_x(path) == [
        GoldEvidence("c1", "r52", "dolor", 78),
        GoldEvidence("c1", "a23.9", "Brucella", 607),
    ]
    path.write_text("c1\tDIAGNOSTICO\tr52\tdolor\n")
    with pytest.raises(ValueError, match="expected 5 tab-separated fields"):
        read_x(path)


def test_alignment_prefers_the_meaning_near_the_evidence_position() -> None:
    english = "He has pain.\nMultiple adenopathies were seen.\nNo fever.\nLater, nodes again.\n"
    spans = [
        make_span("pain", english, "s0"),
        make_span("Multiple adenopathies", english, "s1"),
        make_span("fever", english, "s2"),
        make_span("nodes again", english, "s3"),
    ]
    encoder = HashingEncoder()
    span_vectors = encoder.encode([s.text for s in spans])
    code_vectors = encoder.encode(["Enlarged lymph nodes", "adenopathies"])
    spanish = "Dolor. Adenopatías múltiples. Sin fiebre. Más tarde, ganglios."
    evidence = GoldEvidence("c", "r59.9", "Adenopatías", spanish.index("Adenopatías"))
    kwargs = {
        "source_length": len(spanish),
        "target_starts": line_starts(english),
        "target_length": len(english),
        "spans": spans,
        "span_vectors": span_vectors,
        "code_vectors": code_vectors,
        "evidence_vector": encoder.encode([evidence.text])[0],
    }
    assert align(evidence, **kwargs) == 1  # type: ignore[arg-type]
    assert line_starts(english) == [0, 13, 46, 56]
    assert align(evidence, **{**kwargs, "spans": []}) is None  # type: ignore[arg-type]
    # Two spans equally near in meaning: the one at the evidence's position wins.
    tied = {**kwargs, "code_vectors": encoder.encode(["nodes again", "Multiple adenopathies"])}
    late = GoldEvidence("c", "r59.9", "ganglios", spanish.index("ganglios"))
    tied["evidence_vector"] = encoder.encode([late.text])[0]
    assert align(late, **tied) == 3  # type: ignore[arg-type]
    assert align(evidence, **tied) == 1  # type: ignore[arg-type]


def _mini_codiesp(root: Path) -> Path:
    split = root / "train"
    (split / "text_files").mkdir(parents=True)
    (split / "text_files_en").mkdir()
    spanish = "Varón con dolor abdominal. Se observan adenopatías múltiples. Sin fiebre."
    english = "Male with abdominal pain.\nMultiple adenopathies are observed.\nNo fever.\n"
    (split / "text_files" / "c1.txt").write_text(spanish)
    (split / "text_files_en" / "c1.txt").write_text(english)
    (split / "trainD.tsv").write_text("c1\tr10.9\nc1\tr59.9\nc1\tq99.99\n")
    rows = [
        ("r10.9", "dolor abdominal", spanish.index("dolor")),
        ("r59.9", "adenopatías múltiples", spanish.index("adenopatías")),
        ("q99.99", "fiebre", spanish.index("fiebre")),  # not a catalogue code
    ]
    (split / "trainX.tsv").write_text(
        "".join(f"c1\tDIAGNOSTICO\t{c}\t{t}\t{s} {s + len(t)}\n" for c, t, s in rows)
    )
    return root


def test_coded_notes_of_a_codiesp_split(tmp_path: Path) -> None:
    from icdcoder.memory_codiesp import coded_notes

    notes = coded_notes(_mini_codiesp(tmp_path), "train", catalogue=CATALOGUE)
    assert [(n.codes, n.source) for n in notes] == [(("R59.9",), "codiesp-train:c1")]
    assert "adenopath" in notes[0].text


def test_build_examples_from_a_codiesp_split(tmp_path: Path) -> None:
    from icdcoder.memory_codiesp import build_examples
    from icdcoder.services.segmenter.core import Segmenter

    catalogue = Catalogue(
        version="test",
        codes={
            "R10.9": info("R10.9", "Unspecified abdominal pain"),
            "R59.9": info("R59.9", "Enlarged lymph nodes, unspecified; adenopathy"),
        },
    )
    examples, stats = build_examples(
        _mini_codiesp(tmp_path),
        "train",
        catalogue=catalogue,
        segmenter=Segmenter(),
        encoder=HashingEncoder(),
    )
    assert (stats.cases, stats.evidences, stats.aligned, stats.not_in_catalogue) == (1, 3, 2, 1)
    by_code = {e.code: e for e in examples}
    assert set(by_code) == {"R10.9", "R59.9"}
    assert "abdominal pain" in by_code["R10.9"].text
    assert "adenopathies" in by_code["R59.9"].text
    assert by_code["R59.9"].source == "codiesp-train:c1"


def test_memory_command_refuses_the_reported_split(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from icdcoder.cli import main

    out = tmp_path / "m.jsonl"
    assert (
        main(["memory", "codiesp", "--data", str(tmp_path), "--split", "dev", "--out", str(out)])
        == 2
    )
    assert "refusing to learn from 'dev'" in capsys.readouterr().err
    assert not out.exists()


def test_missing_memory_file_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from icdcoder.cli import main

    pack = ["pack", "build", "--name", "t", "--out", str(tmp_path / "pack")]
    assert main([*pack, "--memory", str(tmp_path / "none.jsonl")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"icdcoder: error: example memory not found: {tmp_path / 'none.jsonl'}"]
    assert not (tmp_path / "pack").exists()  # nothing half-built is left


def test_malformed_memory_file_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from icdcoder.cli import main

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"code": "R52", "text": "pain"}\nnot json\n')
    pack = ["pack", "build", "--name", "t", "--out", str(tmp_path / "pack")]
    assert main([*pack, "--memory", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"icdcoder: error: {bad}:2: not a memory example")
