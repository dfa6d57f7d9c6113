"""The results store on real PostgreSQL and SQLite: schema, versions, results, failures,
backfill from every kind of source (with a fake coder), resume, exports."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from pathlib import Path

import pytest
from fhir.resources.R4B.bundle import Bundle
from sqlalchemy import func, select, text

from icdcoder.backfill.runner import Backfill
from icdcoder.backfill.sources import open_source
from icdcoder.commands.export import write
from icdcoder.shared.messages import CodedNote, CodeResult, Evidence, NoteIn, VerifierInfo
from icdcoder.shared.notes import content_hash
from icdcoder.shared.settings import StoreConfig
from icdcoder.shared.store.engine import StoreError, make_engine
from icdcoder.shared.store.migrate import head, open_store, upgrade
from icdcoder.shared.store.repository import Store
from icdcoder.shared.store.schema import CodeRow, Note, Result
from tests.store_fixtures import postgres_database

PACK = "test-pack-0123456789ab"


@pytest.fixture(params=["postgresql", "sqlite"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    with postgres_database() as url:
        yield url


@pytest.fixture
def store(store_url: str) -> Store:
    upgrade(make_engine(store_url))
    return open_store(StoreConfig(url=store_url), auto_create=False)


def coded_for(note: NoteIn, codes: Sequence[str] = ("E11.9", "I10")) -> CodedNote:
    start = 0
    results = [
        CodeResult(
            code=code,
            description=f"description of {code}",
            confidence=0.9 - i / 10,
            decision="accept" if i == 0 else "review",
            justification=f"why {code}",
            evidence=[Evidence(span_id=f"s{i}", start=start, end=start + 4, text=note.text[:4])],
        )
        for i, code in enumerate(codes)
    ]
    return CodedNote(
        note_id=note.note_id,
        catalogue_version="icd10cm-2026",
        pack=PACK,
        content_hash=content_hash(note.text),
        codes=results,
        excluded=[],
        verifier=VerifierInfo(backend="fake"),
    )


class FakeCoder:
    """Codes every note E11.9 + I10; a note whose text says FAIL raises a public error."""

    def __init__(self) -> None:
        self.coded: list[str] = []

    async def code_many(self, notes: Sequence[NoteIn]) -> list[CodedNote | Exception]:
        from icdcoder.shared.notes import NoteRejected

        out: list[CodedNote | Exception] = []
        for note in notes:
            self.coded.append(note.note_id)
            out.append(NoteRejected("cannot code") if "FAIL" in note.text else coded_for(note))
        return out

    async def code_batches(
        self, batches: Iterable[Sequence[NoteIn]]
    ) -> AsyncIterator[list[CodedNote | Exception]]:
        """As the pipeline: the next batch is read before this one's results are given."""
        pending = iter(batches)
        notes = next(pending, None)
        while notes is not None:
            following = next(pending, None)
            yield await self.code_many(notes)
            notes = following


def test_the_schema_is_created_by_migrations_and_checked(store_url: str) -> None:
    engine = make_engine(store_url)
    if engine.dialect.name == "postgresql":
        with pytest.raises(StoreError, match="icdcoder db upgrade"):
            open_store(StoreConfig(url=store_url))
    assert upgrade(engine) == head()
    assert open_store(StoreConfig(url=store_url)).counts()["results"] == 0


def test_a_note_version_is_its_id_and_text(store: Store) -> None:
    first, created = store.register("n1", "Hypertension.", source="a.txt", metadata={"x": 1})
    again, created_again = store.register("n1", "Hypertension.")
    changed, created_changed = store.register("n1", "Hypertension and gout.")
    assert created and not created_again and created_changed
    assert first.pk == again.pk != changed.pk
    assert first.metadata == {"x": 1} and first.status == "queued"


def test_results_are_kept_once_per_version_and_pack(store: Store) -> None:
    note = NoteIn(note_id="n1", text="Type 2 diabetes. Hypertension.")
    assert store.save_result(coded_for(note), text=note.text) is True
    assert store.save_result(coded_for(note), text=note.text) is False  # a redelivery
    other_pack = coded_for(note).model_copy(update={"pack": "another-pack-0123456789ab"})
    assert store.save_result(other_pack, text=note.text) is True
    with store.session() as session:
        assert session.scalar(select(func.count(Result.id))) == 2
        assert session.scalar(select(func.count(CodeRow.id))) == 4
        # codes are queryable with SQL
        rows = session.execute(
            text("select code, decision, evidence_start from codes order by rank, code")
        ).all()
    assert [tuple(r) for r in rows][:2] == [("E11.9", "accept", 0), ("E11.9", "accept", 0)]
    stored = store.latest("n1", pack=PACK)
    assert stored is not None and stored.coded is not None
    assert stored.note.status == "coded" and stored.text == note.text
    assert store.coded_versions([("n1", content_hash(note.text)), ("n2", "x")], PACK) == {
        ("n1", content_hash(note.text))
    }


def test_without_text_no_patient_text_is_stored(store_url: str) -> None:
    upgrade(make_engine(store_url))
    store = open_store(StoreConfig(url=store_url, keep_text=False))
    note = NoteIn(note_id="n1", text="Secret words of the patient.")
    store.save_result(coded_for(note), text=note.text)
    store.save_failure(stage="intake", reason="r", note_id="n2", text="More secret words.")
    with store.session() as session:
        dumped = json.dumps([r.coded for r in session.scalars(select(Result))])
        texts = session.scalars(select(Note.text)).all()
    assert "Secret" not in dumped and texts == [None, None]
    stored = store.latest("n1")
    assert stored is not None and stored.coded is not None
    assert stored.coded.codes[0].evidence[0].start == 0  # offsets stay


def write_sources(folder: Path) -> list[str]:
    """A folder, a JSONL and a CSV file, with every kind of bad row; their paths."""
    notes = folder / "notes"
    notes.mkdir()
    (notes / "a.txt").write_text("Asthma.")
    (notes / "b.txt").write_text("Gout and hypertension.")
    (notes / "empty.txt").write_text("  \n")
    (notes / "latin1.txt").write_bytes(b"caf\xe9")
    (notes / "fails.txt").write_text("FAIL this one")
    lines = [
        json.dumps({"id": "j1", "text": "Pneumonia.", "encounter": "Encounter/7"}),
        json.dumps({"id": "j2", "text": "x" * 300}),  # too long for max_chars=200
        json.dumps({"id": "bad id", "text": "Asthma."}),
        json.dumps({"id": "j1", "text": "Another text, same id."}),  # duplicate id
        "not json",
        json.dumps({"id": "j3", "text": "nul\u0000byte"}),
        json.dumps({"id": "j4"}),
    ]
    (folder / "notes.jsonl").write_text("\n".join(lines) + "\n")
    with (folder / "notes.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text", "discharge_date"])
        writer.writerow(["c1", "Heart failure.", "2024-03-01"])
        writer.writerow(["c2", "", "2024-03-02"])
    return [str(notes), str(folder / "notes.jsonl"), str(folder / "notes.csv")]


def rows_of(sources: list[str]) -> Iterator[object]:
    for source in sources:
        yield from open_source(source)


async def test_backfill_records_every_bad_row_and_a_rerun_codes_nothing(
    store: Store, tmp_path: Path
) -> None:
    sources = write_sources(tmp_path)
    coder = FakeCoder()
    backfill = Backfill(store, lambda: coder, pack=PACK, max_chars=200, batch=3)
    summary = await backfill.run(rows_of(sources))  # type: ignore[arg-type]
    assert summary.coded == 4  # a, b, j1, c1
    assert dict(summary.failed) == {
        "empty": 2,
        "not UTF-8": 1,
        "rejected": 1,
        "too long": 1,
        "bad id": 1,
        "duplicate id": 1,
        "unreadable row": 2,
        "not text": 1,
    }
    counts = store.counts()
    assert counts["results"] == 4 and counts["failures"] == summary.failures
    stored = store.latest("j1")
    assert stored is not None and stored.note.metadata["encounter"] == "Encounter/7"

    second = FakeCoder()
    again = await Backfill(store, lambda: second, pack=PACK, max_chars=200).run(
        rows_of(sources)  # type: ignore[arg-type]
    )
    # what was coded is skipped; what failed in the pipeline is tried again
    assert again.coded == 0 and again.skipped == 4 and second.coded == ["fails"]
    assert store.counts()["results"] == 4  # nothing twice


async def test_a_row_repeated_in_the_next_batch_is_coded_once(store: Store, tmp_path: Path) -> None:
    folder = tmp_path / "n"
    folder.mkdir()
    for name, said in [("a", "Asthma."), ("b", "Gout."), ("c", "FAIL"), ("d", "Sepsis.")]:
        (folder / f"{name}.txt").write_text(said)
    rows = list(open_source(str(folder)))
    coder = FakeCoder()
    summary = await Backfill(store, lambda: coder, pack=PACK, max_chars=200, batch=2).run(
        [rows[0], rows[1], rows[0], rows[2], rows[3]]
    )
    assert coder.coded == ["a", "b", "c", "d"]
    assert summary.coded == 3 and summary.skipped == 1 and dict(summary.failed) == {"rejected": 1}
    assert store.counts()["results"] == 3


async def test_a_new_pack_or_a_changed_note_is_coded_again(store: Store, tmp_path: Path) -> None:
    folder = tmp_path / "n"
    folder.mkdir()
    (folder / "a.txt").write_text("Asthma.")
    await Backfill(store, FakeCoder, pack=PACK, max_chars=200).run(open_source(str(folder)))
    (folder / "a.txt").write_text("Asthma, now with pneumonia.")
    coder = FakeCoder()
    summary = await Backfill(store, lambda: coder, pack=PACK, max_chars=200).run(
        open_source(str(folder))
    )
    assert summary.coded == 1 and coder.coded == ["a"]
    with store.session() as session:
        assert session.scalar(select(func.count(Note.id))) == 2  # two versions of note a


async def test_backfill_reads_a_sql_query(store: Store, tmp_path: Path) -> None:
    emr = tmp_path / "emr.db"
    with sqlite3.connect(emr) as db:
        db.execute("create table discharges (note_id text, body text, discharged text)")
        db.executemany(
            "insert into discharges values (?, ?, ?)",
            [("d1", "Sepsis.", "2024-01-02"), ("d2", "Stroke.", "2024-01-03")],
        )
    rows = open_source(
        "select note_id as id, body as text, discharged from discharges order by note_id",
        from_db=f"sqlite:///{emr}",
    )
    summary = await Backfill(store, FakeCoder, pack=PACK, max_chars=200).run(rows)
    assert summary.coded == 2
    stored = store.latest("d2")
    assert stored is not None and stored.note.metadata == {"discharged": "2024-01-03"}


def test_exports(store: Store) -> None:
    for i in range(3):
        note = NoteIn(note_id=f"n{i}", text=f"Note {i}.")
        coded = coded_for(note)
        formula = coded.codes[0].model_copy(update={"description": "=HYPERLINK(1)"})
        coded = coded.model_copy(update={"codes": [formula, *coded.codes[1:]]})
        store.save_result(coded, text=note.text, metadata={"subject": "Patient/1"})
    out = io.StringIO()
    write("csv", store.iter_results(), out)
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert rows[0][:4] == ["note_id", "content_hash", "rank", "code"]
    assert len(rows) == 1 + 3 * 2
    assert rows[1][4] == "'=HYPERLINK(1)"  # not a formula to a spreadsheet
    assert out.getvalue().endswith("\r\n")
    out = io.StringIO()
    write("codiesp", store.iter_results(), out)
    assert out.getvalue().splitlines()[:2] == ["n0\te11.9", "n0\ti10"]
    out = io.StringIO()
    write("fhir", store.iter_results(), out)
    bundles = [Bundle.model_validate_json(line) for line in out.getvalue().splitlines()]
    assert len(bundles) == 3
    first = bundles[0].entry[0].resource  # type: ignore[index, union-attr]
    assert first.code.coding[0].system == "http://hl7.org/fhir/sid/icd-10-cm"  # type: ignore[union-attr]
    assert first.subject.reference == "Patient/1"  # type: ignore[union-attr]
    out = io.StringIO()
    write("jsonl", store.iter_results(), out)
    assert [CodedNote.model_validate_json(line).note_id for line in out.getvalue().splitlines()]
