"""icdcoder train: the fits on tiny synthetic corpora, retrieved with the test doubles."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from threadpoolctl import threadpool_limits

from icdcoder.cli import main
from icdcoder.services.retriever.core import Encoder, IndexRows, Retriever
from icdcoder.services.verifier.boosted import BoostedTrees
from icdcoder.services.verifier.note_model import NOTE_FEATURES
from icdcoder.services.verifier.similar_notes import SimilarNotes
from icdcoder.services.verifier.similarity import SimilarityVerifier
from icdcoder.services.verifier.span_model import FEATURES, SpanWeights
from icdcoder.services.verifier.weights import VerifierWeights
from icdcoder.shared.catalogue import Catalogue
from icdcoder.shared.memory import Example, MemoryNote
from icdcoder.shared.pack import BUILTIN, Pack, load_pack, open_pack
from icdcoder.shared.settings import Settings, VerifierConfig
from icdcoder.training.corpus import (
    CaseList,
    CodedCase,
    CodiEspCorpus,
    CorpusError,
    trainable_cases,
)
from icdcoder.training.note_fit import fit_trees, note_rows
from icdcoder.training.retrieval import (
    ExampleVectors,
    Retrieved,
    cache_stem,
    cached,
    retrieval_key,
    retrieve_cases,
    with_memory,
)
from icdcoder.training.span_fit import fit_logistic, fit_span, span_rows
from icdcoder.training.train import (
    FitOptions,
    TrainingData,
    base_span_features,
    base_tree_params,
    fit_weights,
)
from icdcoder.training.weights_file import read_weights, with_note, write_weights
from tests.fakes import HashingEncoder, NumpyIndex, sentence_segmenter

CODES = {
    "E11.9": "type 2 diabetes mellitus without complications",
    "I10": "essential primary hypertension",
    "J18.9": "pneumonia unspecified organism",
    "R50.9": "fever unspecified",
    "N39.0": "urinary tract infection site not specified",
    "K35.80": "acute appendicitis without abscess",
    "M54.50": "low back pain unspecified",
    "D64.9": "anemia unspecified",
}
PHRASES = {
    "E11.9": "type 2 diabetes",
    "I10": "essential hypertension",
    "J18.9": "a pneumonia of the lung",
    "R50.9": "fever",
    "N39.0": "urinary infection",
    "K35.80": "acute appendicitis",
    "M54.50": "back pain",
    "D64.9": "anemia",
}
SIGMOID = np.vectorize(lambda z: 1.0 / (1.0 + np.exp(-z)))


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """scikit-learn's OpenMP threads crawl on a busy two-core machine; one is plenty here."""
    with threadpool_limits(limits=1):
        yield


#: One span per sentence; a sentence starting 'mother' is a family span.
segment = sentence_segmenter(family_prefix="mother")


def make_retriever(encoder: Encoder) -> Retriever:
    rows = IndexRows(codes=list(CODES), texts=list(CODES.values()))
    index = NumpyIndex(HashingEncoder().encode(list(rows.texts)))
    return Retriever(encoder, index, rows, CODES, catalogue_version="test", top_k=5)


def synthetic_cases(n: int, seed: int = 0) -> list[CodedCase]:
    """Notes naming 2-4 conditions; the gold misses one named condition in five, so a code's
    retrieval evidence predicts gold without deciding it."""
    rng = np.random.default_rng(seed)
    codes = list(CODES)
    cases = []
    for i in range(n):
        named = [str(c) for c in rng.choice(codes, size=int(rng.integers(2, 5)), replace=False)]
        text = ". ".join(f"patient has {PHRASES[c]}" for c in named) + "."
        gold = tuple(c.lower() for c in named if rng.random() > 0.2)
        cases.append(CodedCase(f"case-{i:03d}", text, gold))
    return cases


def retrieved(cases: list[CodedCase]) -> Retrieved:
    return retrieve_cases(cases, segment, make_retriever, HashingEncoder())


def training_data(cases: list[CodedCase]) -> TrainingData:
    return TrainingData(cases=tuple(cases), notes=retrieved(cases).notes, retrieval="test")


# --- the span model -------------------------------------------------------------------------


def test_newton_logistic_recovers_the_weights_that_generated_the_labels() -> None:
    rng = np.random.default_rng(1)
    x = np.hstack([np.ones((20_000, 1)), rng.normal(size=(20_000, 2))])
    true = np.array([-1.0, 2.0, -3.0])
    y = (rng.random(20_000) < SIGMOID(x @ true)).astype(float)
    assert np.allclose(fit_logistic(x, y), true, atol=0.1)


def test_separable_labels_give_a_separating_weight() -> None:
    rng = np.random.default_rng(2)
    features = rng.normal(size=(400, 2))
    y = (features @ np.array([1.0, -2.0]) > 0.5).astype(float)
    w = fit_logistic(np.hstack([np.ones((400, 1)), features]), y)
    # the L2 penalty keeps it finite; it still separates every row
    predicted = (np.hstack([np.ones((400, 1)), features]) @ w > 0).astype(float)
    assert (predicted == y).all()
    assert w[2] / w[1] == pytest.approx(-2.0, rel=0.15)


def test_span_rows_are_the_verifiers_features_labelled_by_gold() -> None:
    cases = synthetic_cases(6)
    notes = retrieved(cases).notes
    x, y = span_rows(cases, notes, considered=10)
    first = notes[0].items[0]
    assert x.shape == (len(y), 1 + len(FEATURES))
    assert len(y) == sum(len(i.candidates) for n in notes for i in n.items)
    assert x[:, 0].tolist() == [1.0] * len(y)
    assert y[0] == float(first.candidates[0].code.lower() in cases[0].gold())
    assert 0 < y.sum() < len(y)


def test_span_fit_uses_only_the_chosen_features_and_rounds_like_the_file() -> None:
    cases = synthetic_cases(40)
    x, y = span_rows(cases, retrieved(cases).notes, considered=10)
    weights = fit_span(x, y, ("margin", "score"))  # any order: FEATURES order out
    assert list(weights) == ["bias", "score", "margin"]
    assert all(round(v, 4) == v for v in weights.values())
    # gold codes are the best-retrieved ones here: score must weigh for them
    assert weights["score"] > 0
    with pytest.raises(ValueError, match="not span features"):
        fit_span(x, y, ("score", "nonsense"))


# --- retrieval and the memory ---------------------------------------------------------------


def test_retrieval_keeps_each_spans_own_query_vector_even_after_a_context_query() -> None:
    cases = [CodedCase("a", "mother had anemia. patient has fever.", ("r50.9",))]
    result = retrieved(cases)
    spans = [item.span for item in result.notes[0].items]
    assert spans[0].context.family  # searched twice: its text, then "family history of ..."
    assert np.allclose(result.span_vectors, HashingEncoder().encode([s.text for s in spans]))


def test_retrieval_cache_is_reused_for_the_same_texts_only(tmp_path: Path) -> None:
    cases = synthetic_cases(3)
    calls: list[int] = []

    def compute() -> Retrieved:
        calls.append(1)
        return retrieved(cases)

    stem = cache_stem(tmp_path, "tiny", cases, "key")
    first, hit = cached(stem, cases, compute)
    again, hit_again = cached(stem, cases, compute)
    assert (hit, hit_again, len(calls)) == (False, True, 1)
    assert again.notes == first.notes
    assert np.array_equal(again.span_vectors, first.span_vectors)
    edited = [cases[0], cases[1], CodedCase(cases[2].case_id, "patient has fever.", ())]
    assert cache_stem(tmp_path, "tiny", edited, "key") != stem


def test_packs_that_differ_only_in_weights_share_a_retrieval_cache() -> None:
    base = load_pack()
    retrained = Pack(base.root, base.manifest.model_copy(update={"name": "other"}))
    assert retrieval_key(retrained, 20) == retrieval_key(base, 20)
    assert retrieval_key(base, 30) != retrieval_key(base, 20)
    model = base.manifest.model.model_copy(update={"fingerprint": "model-0123456789ab"})
    other_model = Pack(base.root, base.manifest.model_copy(update={"model": model}))
    assert retrieval_key(other_model, 20) != retrieval_key(base, 20)


def test_the_segmenters_and_retrievers_code_is_in_the_retrieval_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A context rule changed in the segmenter makes a new cache: fits never see stale spans."""
    import icdcoder.training.retrieval as retrieval

    base = load_pack()
    key = retrieval_key(base, 20)
    retrieval._retrieval_code.cache_clear()
    monkeypatch.setattr(retrieval, "_RETRIEVAL_CODE", ("icdcoder.services.segmenter.spans",))
    try:
        assert retrieval_key(base, 20) != key
    finally:
        retrieval._retrieval_code.cache_clear()


def test_memory_search_leaves_a_training_cases_own_examples_out() -> None:
    cases = [CodedCase("case-a", "patient has type 2 diabetes.", ("e11.9",))]
    result = retrieved(cases)
    examples = ExampleVectors.encode(
        [
            Example(
                code="E11.9", text="patient has type 2 diabetes", source="codiesp-train:case-a"
            ),
            Example(code="I10", text="type 2 hypertension", source="codiesp-train:case-b"),
        ],
        HashingEncoder(),
    )

    def votes(leave_case_out: bool) -> dict[str, int]:
        (note,) = with_memory(
            result.notes, result.span_vectors, examples, CODES, leave_case_out=leave_case_out
        )
        return {c.code: c.memory_votes for c in note.items[0].candidates if c.memory_votes}

    assert votes(leave_case_out=False) == {"E11.9": 1, "I10": 1}
    assert votes(leave_case_out=True) == {"I10": 1}


# --- the note model -------------------------------------------------------------------------


def test_note_rows_leave_the_cases_own_coded_note_out() -> None:
    cases = [
        CodedCase("case-a", "patient has type 2 diabetes. patient has fever.", ("e11.9",)),
        CodedCase("case-b", "patient has fever. patient has anemia.", ("r50.9",)),
    ]
    notes = retrieved(cases).notes
    memory = [
        MemoryNote(codes=("E11.9",), text=cases[0].text, source="codiesp-train:case-a"),
        MemoryNote(codes=("R50.9",), text=cases[1].text, source="codiesp-train:case-b"),
        MemoryNote(codes=("R50.9", "D64.9"), text="fever and anemia", source="other:case-c"),
    ]
    verifier = SimilarityVerifier(weights=SpanWeights())
    x, _ = note_rows(cases, notes, verifier, memory, VerifierConfig(), progress=False)
    codes = list(verifier.note_rows(notes[0], {}))  # case-a's rows come first, in this order
    row = dict(zip(NOTE_FEATURES, x[codes.index("E11.9")], strict=True))
    # only case-a's own note carries E11.9: left out, nothing vouches for it
    assert row["similar_notes"] == 0.0
    assert row["coded_notes"] == 0.0
    # ...whereas the memory searched as is would have voted for it
    assert SimilarNotes(memory).votes(cases[0].text)["E11.9"] > 0.5


def test_note_trees_in_the_weights_file_give_scikit_learns_log_odds(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(3000, len(NOTE_FEATURES)))
    y = (x[:, 0] + x[:, 1] * x[:, 2] + rng.normal(scale=0.5, size=3000) > 1.0).astype(float)
    params = {"max_iter": 20, "learning_rate": 0.1, "max_leaf_nodes": 7, "min_samples_leaf": 20}
    base = read_weights(BUILTIN / "weights.json")
    path = tmp_path / "weights.json"
    write_weights(path, with_note(base, fit_trees(x, y, params)))

    loaded = VerifierWeights.read(path)
    assert isinstance(loaded.note, BoostedTrees)
    assert loaded.note_point.accept_threshold == base["note"]["operating_point"]["accept_threshold"]
    model = HistGradientBoostingClassifier(**params, early_stopping=False, random_state=0)
    model.fit(x, y)
    test = rng.normal(size=(500, len(NOTE_FEATURES)))
    assert np.allclose(loaded.note.log_odds(test), model.decision_function(test), atol=1e-4)


def test_a_fit_keeps_the_bases_shape_and_operating_points() -> None:
    base = read_weights(BUILTIN / "weights.json")
    assert base_span_features(base, memory=False) == ("score", "coverage", "margin")
    assert base_tree_params(base) == base["note"]["params"]
    small = {"max_iter": 10, "learning_rate": 0.1, "max_leaf_nodes": 4, "min_samples_leaf": 5}
    weights, report = fit_weights(
        training_data(synthetic_cases(30)),
        base,
        FitOptions(span_cases=20, tree_params=small),
        corpus="tiny",
        settings=Settings(),
    )
    assert [k for k in weights if k in ("bias", *FEATURES)] == [
        "bias",
        "score",
        "coverage",
        "margin",
    ]
    assert weights["operating_point"] == base["operating_point"]
    assert weights["note"]["operating_point"] == base["note"]["operating_point"]
    assert weights["considered"] == base["considered"]
    assert weights["provenance"]["fitted_on"] == "tiny, 20 cases"
    assert weights["note"]["provenance"]["fitted_on"] == "tiny, 30 cases"
    assert (report.span_cases, report.note_cases, len(weights["note"]["trees"]["trees"])) == (
        20,
        30,
        10,
    )
    VerifierWeights.from_dict(weights)  # a file the verifier reads


def test_logistic_note_model_and_kept_span_weights() -> None:
    base = read_weights(BUILTIN / "weights.json")
    weights, report = fit_weights(
        training_data(synthetic_cases(30)),
        base,
        FitOptions(fit_span=False, note_model="logistic"),
        corpus="tiny",
        settings=Settings(),
    )
    assert {k: weights[k] for k in ("bias", "score")} == {k: base[k] for k in ("bias", "score")}
    assert set(weights["note"]) == {"bias", *NOTE_FEATURES, "provenance", "operating_point"}
    assert report.span_cases == 0 and report.tree_params == {}


def test_a_fit_scores_as_many_candidates_a_span_as_it_is_told_and_says_so() -> None:
    base = read_weights(BUILTIN / "weights.json")
    data = training_data(synthetic_cases(30))
    fits = {
        n: fit_weights(data, base, FitOptions(considered=n), corpus="tiny", settings=Settings())
        for n in (1, 2)
    }
    assert [fits[n][0]["considered"] for n in (1, 2)] == [1, 2]
    assert VerifierWeights.from_dict(fits[1][0]).considered == 1
    # each span's candidates beyond the first are rows only when considered
    assert fits[1][1].candidates < fits[2][1].candidates
    older = {k: v for k, v in base.items() if k != "considered"}
    kept, _ = fit_weights(data, older, FitOptions(), corpus="tiny", settings=Settings())
    assert kept["considered"] == 10


# --- the corpus and the command -------------------------------------------------------------


def codiesp_folder(root: Path, split: str, cases: list[CodedCase]) -> Path:
    texts = root / split / "text_files_en"
    texts.mkdir(parents=True)
    for case in cases:
        (texts / f"{case.case_id}.txt").write_text(case.text)
    gold = "".join(f"{c.case_id}\t{code}\n" for c in cases for code in c.codes)
    (root / split / f"{split}D.tsv").write_text(gold)
    return root


@pytest.mark.parametrize("split", ["dev", "test"])
def test_reported_splits_are_refused(
    tmp_path: Path, split: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(CorpusError, match="refusing to fit on codiesp-"):
        trainable_cases(CodiEspCorpus(tmp_path, split))
    with pytest.raises(CorpusError, match="refusing"):
        trainable_cases(CaseList("reviewed", (), reported=True))
    argv = ["train", "--data", str(tmp_path), "--split", split]
    assert main([*argv, "--out", str(tmp_path / "p"), "--name", "p"]) == 2
    assert "refusing to fit on" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--name", "Bad Name"], "pack name"),
        (["--span-features", "score,nope"], "unknown span feature"),
        (["--no-span", "--span-cases", "3"], "contradict"),
        (["--note-model", "logistic", "--trees", "10"], "not logistic weights"),
    ],
)
def test_bad_arguments_fail_in_one_line_before_any_work(
    tmp_path: Path, extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", "--data", str(tmp_path), "--out", str(tmp_path / "p"), "--name", "p"]
    assert main([*argv, *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_train_writes_a_pack_that_loads_with_the_new_weights(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import icdcoder.commands.train as command

    cases = synthetic_cases(30)
    data = codiesp_folder(tmp_path / "codiesp", "train", cases)
    seen: list[list[str]] = []

    def fake_retrieval(name: str, got: list[CodedCase], *_: object, **__: object) -> TrainingData:
        seen.append([c.case_id for c in got])
        return training_data(got)

    monkeypatch.setattr(command, "retrieve_corpus", fake_retrieval)
    # the pack needs only the catalogue's version here (no memory to check against it)
    tiny = Catalogue(version=load_pack().manifest.catalogue, codes={})
    monkeypatch.setattr(command, "open_pack", lambda root, **_: open_pack(root, catalogue=tiny))
    out = tmp_path / "packs" / "tiny"
    argv = ["train", "--data", str(data), "--out", str(out), "--name", "tiny"]
    assert main([*argv, "--span-cases", "20", "--no-progress"]) == 0

    printed = capsys.readouterr().out
    pack = load_pack(out)
    assert seen == [sorted(c.case_id for c in cases)]
    assert pack.id in printed and "20 cases" in printed
    assert pack.manifest.provenance["base"] == load_pack().id
    assert pack.manifest.provenance["weights"].startswith("icdcoder train on CodiEsp train")
    weights = json.loads(pack.weights_path.read_text())
    assert weights["provenance"]["fitted_on"] == "CodiEsp train (English), 20 cases"
    assert weights["note"]["params"] == read_weights(BUILTIN / "weights.json")["note"]["params"]
    assert VerifierWeights.read(pack.weights_path).note is not None
    # a second run into the same folder is refused before any work
    assert main([*argv, "--no-progress"]) == 2
    assert "not an empty folder" in capsys.readouterr().err
    # the tree settings the command line gives replace the base's, the others stay
    bigger = ["train", "--data", str(data), "--out", str(tmp_path / "b"), "--name", "b"]
    assert main([*bigger, "--trees", "7", "--leaves", "5", "--min-leaf", "3", "--no-progress"]) == 0
    assert "7 trees of 5 leaves" in capsys.readouterr().out
    params = json.loads((tmp_path / "b" / "weights.json").read_text())["note"]["params"]
    base = read_weights(BUILTIN / "weights.json")["note"]["params"]
    assert params == base | {"max_iter": 7, "max_leaf_nodes": 5, "min_samples_leaf": 3}


def test_the_retrieval_cache_key_names_the_hnsw_search_breadth() -> None:
    from icdcoder.services.retriever.adapters import runtime

    hnsw = Settings().retriever.model_copy(update={"index": "hnsw"})
    flat = hnsw.model_copy(update={"index": "flat"})
    assert runtime(hnsw) != runtime(hnsw.model_copy(update={"hnsw_ef_search": 256}))
    assert runtime(flat) == runtime(flat.model_copy(update={"hnsw_ef_search": 256}))
