"""The review page's API through httpx (FastAPI's TestClient) with a fake coder and the real
catalogue: login, sessions and CSRF, decisions and their audit rows, version conflicts, the
worklist, catalogue search, and what the store's reviews teach (memory export, training
corpus). The store-level parts also run on PostgreSQL."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from fastapi.testclient import TestClient
from sqlalchemy import select

from icdcoder.api.app import create_app
from icdcoder.api.coding import InProcessCoding
from icdcoder.api.keys import create_key, key_ring
from icdcoder.api.users import UserError, authenticate, create_user, disable_user
from icdcoder.cli import main
from icdcoder.review.learning import ReviewedCorpus
from icdcoder.shared.catalogue import Catalogue
from icdcoder.shared.logging import configure_logging
from icdcoder.shared.memory import (
    Example,
    MemoryNote,
    load_memory,
    read_memory,
    read_rejected,
)
from icdcoder.shared.messages import (
    CodedNote,
    CodeResult,
    Evidence,
    ExcludedSpan,
    NoteIn,
    VerifierInfo,
)
from icdcoder.shared.notes import content_hash
from icdcoder.shared.settings import ApiConfig, Settings, StoreConfig
from icdcoder.shared.store.engine import make_engine
from icdcoder.shared.store.migrate import open_store, upgrade
from icdcoder.shared.store.repository import Store
from icdcoder.shared.store.review import DecisionIn, ReviewStore, StaleVersion
from icdcoder.shared.store.schema import Base, ReviewDecision
from tests.store_fixtures import postgres_database

PACK = "test-pack-0123456789ab"
TEXT = (
    "Discharge diagnoses: type 2 diabetes mellitus and essential hypertension.\n"
    "No chest pain. Diabetic nephropathy with chronic kidney disease."
)
PASSWORD = "correct horse battery"


def span(text: str, phrase: str) -> tuple[int, int]:
    start = text.index(phrase)
    return start, start + len(phrase)


def coded(note: NoteIn) -> CodedNote:
    """E11.9 accepted and I10 for review, each on its phrase; chest pain excluded (negated)."""

    def result(code: str, phrase: str, decision: str, confidence: float) -> CodeResult:
        start, end = span(note.text, phrase)
        return CodeResult(
            code=code,
            description=f"description of {code}",
            confidence=confidence,
            decision=decision,  # type: ignore[arg-type]
            justification=f"why {code}",
            evidence=[Evidence(span_id="s1", start=start, end=end, text=phrase)],
        )

    start, end = span(note.text, "chest pain")
    return CodedNote(
        note_id=note.note_id,
        catalogue_version="icd10cm-2026",
        pack=PACK,
        content_hash=content_hash(note.text),
        codes=[
            result("E11.9", "type 2 diabetes mellitus", "accept", 0.9),
            result("I10", "essential hypertension", "review", 0.5),
        ],
        excluded=[
            ExcludedSpan(
                span_id="s2",
                start=start,
                end=end,
                text="chest pain",
                code="R07.9",
                reason="negated",
            )
        ],
        verifier=VerifierInfo(backend="fake"),
    )


class FakeCoder:
    async def code_in_threads(self, note: NoteIn) -> CodedNote:
        return coded(note)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings().with_section(
        store=StoreConfig(url=f"sqlite:///{tmp_path / 'store.db'}"),
        api=ApiConfig(max_wait_s=10),
    )


@pytest.fixture
def store(settings: Settings) -> Store:
    store = open_store(settings.store)
    create_user(store, "ana", PASSWORD)
    create_user(store, "ben", PASSWORD)
    return store


@pytest.fixture
def key(store: Store) -> str:
    return create_key(store, "tests")


@pytest.fixture
def app_client(
    settings: Settings, store: Store, catalogue: Catalogue, key: str
) -> Iterator[tuple[TestClient, object]]:
    app = create_app(
        settings,
        store=store,
        coding=InProcessCoding(store, FakeCoder),
        keys=key_ring("", store),
        pack=PACK,
        catalogue=lambda: catalogue,
    )
    with TestClient(app, follow_redirects=False) as client:
        yield client, app


@pytest.fixture
def client(app_client: tuple[TestClient, object]) -> TestClient:
    return app_client[0]


def code_note(client: TestClient, key: str, note_id: str = "adm-1", text: str = TEXT) -> None:
    """Submit a note and wait until it is coded (on a busy machine, past one ?wait=)."""
    auth = {"Authorization": f"Bearer {key}"}
    note = {"id": note_id, "text": text}
    response = client.post("/v1/notes?wait=10", json=note, headers=auth)
    for _ in range(30):
        if response.status_code == 200:
            break
        assert response.status_code == 202, response.text
        response = client.post("/v1/notes?wait=10", json=note, headers=auth)
    assert response.status_code == 200, response.text


def login(client: TestClient, user: str = "ana") -> str:
    """Log in; the page's CSRF token."""
    response = client.post("/login", data={"username": user, "password": PASSWORD})
    assert response.status_code == 303 and response.headers["location"] == "/review"
    cookie = response.headers["set-cookie"].lower()
    assert "samesite=strict" in cookie and "httponly" in cookie
    page = client.get("/review")
    assert page.status_code == 200
    found = re.search(r'name="token" value="([^"]+)"', page.text)
    assert found is not None
    return found.group(1)


def second_client(app: object) -> TestClient:
    """Another browser on the same app (not entered: the app's lifespan runs once)."""
    return TestClient(app, follow_redirects=False)  # type: ignore[arg-type]


def test_pages_and_the_json_api_need_a_login_or_a_key(client: TestClient, key: str) -> None:
    code_note(client, key)
    page = client.get("/review/notes/adm-1")
    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=%2Freview%2Fnotes%2Fadm-1"
    assert client.get("/review").status_code == 303
    assert client.get("/v1/review/notes").status_code == 401
    assert client.get("/v1/catalogue/search?q=diabetes").status_code == 401
    write = client.post(
        "/v1/review/notes/adm-1/decisions",
        json={"version": 0, "decisions": [{"code": "E11.9", "action": "accept"}]},
    )
    assert write.status_code == 401 and "log in" in write.json()["detail"]
    wrong = client.post("/login", data={"username": "ana", "password": "nope nope nope"})
    assert wrong.status_code == 401 and "wrong password" in wrong.text
    unknown = client.post("/login", data={"username": "zed", "password": PASSWORD})
    assert unknown.status_code == 401
    bad_key = client.get("/v1/review/notes", headers={"Authorization": "Bearer icd_nope"})
    assert bad_key.status_code == 401
    assert client.get("/login?next=https://evil.example/").text.count("evil.example") == 0


def test_a_session_write_needs_its_csrf_token(client: TestClient, key: str) -> None:
    code_note(client, key)
    token = login(client)
    body = {"version": 0, "decisions": [{"code": "E11.9", "action": "accept"}]}
    url = "/v1/review/notes/adm-1/decisions"
    assert client.post(url, json=body).status_code == 403
    assert client.post(url, json=body, headers={"X-CSRF-Token": "forged"}).status_code == 403
    assert client.post(url, json=body, headers={"X-CSRF-Token": token}).status_code == 200


def test_decisions_are_stored_with_user_and_time_and_survive_a_reload(
    client: TestClient, key: str, store: Store
) -> None:
    code_note(client, key)
    token = login(client)
    headers = {"X-CSRF-Token": token}
    note = client.get("/v1/review/notes/adm-1").json()
    assert note["version"] == 0 and note["status"] == "needs_review"
    assert [c["code"] for c in note["codes"]] == ["E11.9", "I10"]
    assert note["excluded"][0]["reason"] == "negated"
    start, end = span(TEXT, "Diabetic nephropathy")
    url = "/v1/review/notes/adm-1/decisions"
    version = note["version"]
    for decision in (
        {"code": "E11.9", "action": "accept"},
        {"code": "I10", "action": "reject"},
        {"code": "e1121", "action": "add", "evidence": [{"start": start, "end": end}]},
    ):
        answer = client.post(
            url, json={"version": version, "decisions": [decision]}, headers=headers
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["version"] == version + 1
        version = answer.json()["version"]
    again = client.get("/v1/review/notes/adm-1").json()
    states = {c["code"]: (c["state"], c["decided_by"]) for c in again["codes"]}
    assert states == {
        "E11.9": ("accept", "ana"),
        "I10": ("reject", "ana"),
        "E11.21": ("add", "ana"),
    }
    added = again["codes"][2]
    assert added["system"] == "added" and "nephropathy" in added["description"].lower()
    assert added["evidence"] == [{"start": start, "end": end, "section": ""}]
    assert again["final_codes"] == ["E11.9", "E11.21"]
    with store.session() as session:
        rows = session.scalars(select(ReviewDecision).order_by(ReviewDecision.id)).all()
    assert [(r.code, r.action, r.user, r.version) for r in rows] == [
        ("E11.9", "accept", "ana", 1),
        ("I10", "reject", "ana", 2),
        ("E11.21", "add", "ana", 3),
    ]
    assert rows[2].evidence == [{"start": start, "end": end}] and rows[0].evidence is None
    assert all(r.created_at is not None for r in rows)
    page = client.get("/review/notes/adm-1").text
    assert 'data-code="E11.21"' in page and "state-reject" in page and 'data-version="3"' in page
    assert 'class="ev"' in page and "data-reason=" in page
    assert not re.search(r'(src|href)="(https?:)?//', page)  # offline: every asset is the app's
    for asset in ("/review/static/review.js", "/review/static/review.css"):
        assert client.get(asset).status_code == 200
    done = client.post("/v1/review/notes/adm-1/reviewed", json={"version": 3}, headers=headers)
    assert done.status_code == 200 and done.json()["status"] == "reviewed"
    assert done.json()["reviewed_by"] == "ana"


def test_a_stale_version_is_409_and_nothing_is_overwritten(
    app_client: tuple[TestClient, object], key: str, store: Store
) -> None:
    client, app = app_client
    code_note(client, key)
    ana = login(client, "ana")
    other = second_client(app)
    ben = login(other, "ben")
    seen_by_ben = other.get("/v1/review/notes/adm-1").json()["version"]
    url = "/v1/review/notes/adm-1/decisions"
    first = client.post(
        url,
        json={"version": 0, "decisions": [{"code": "I10", "action": "accept"}]},
        headers={"X-CSRF-Token": ana},
    )
    assert first.status_code == 200
    stale = other.post(
        url,
        json={"version": seen_by_ben, "decisions": [{"code": "I10", "action": "reject"}]},
        headers={"X-CSRF-Token": ben},
    )
    assert stale.status_code == 409
    assert stale.headers["content-type"].startswith("application/problem+json")
    assert "another reviewer" in stale.json()["detail"] and "reload" in stale.json()["detail"]
    stale_review = other.post(
        "/v1/review/notes/adm-1/reviewed", json={"version": 0}, headers={"X-CSRF-Token": ben}
    )
    assert stale_review.status_code == 409
    state = ReviewStore(store, PACK).note("adm-1")
    assert state is not None and state.version == 1 and state.status == "needs_review"
    assert [(d.code, d.action, d.user) for d in state.decisions] == [("I10", "accept", "ana")]


def test_an_api_key_can_review_and_is_recorded_as_the_user(client: TestClient, key: str) -> None:
    code_note(client, key)
    auth = {"Authorization": f"Bearer {key}"}
    answer = client.post(
        "/v1/review/notes/adm-1/decisions",
        json={"version": 0, "decisions": [{"code": "E11.9", "action": "reject"}]},
        headers=auth,
    )
    assert answer.status_code == 200
    assert answer.json()["audit"][0]["user"] == "key:tests"


BAD_DECISIONS = [
    ({"code": "Z99.89", "action": "accept"}, 422, "add it instead"),
    ({"code": "E11.999", "action": "add"}, 422, "not in the current catalogue"),
    ({"code": "nonsense", "action": "add"}, 422, "not an ICD-10-CM code"),
    ({"code": "E11.9", "action": "add", "evidence": [{"start": 5, "end": 100000}]}, 422, "span"),
    ({"code": "E11.9", "action": "delete"}, 422, "action"),
]


@pytest.mark.parametrize(("decision", "status", "words"), BAD_DECISIONS)
def test_bad_decisions_are_refused_and_change_nothing(
    client: TestClient, key: str, decision: dict[str, object], status: int, words: str
) -> None:
    code_note(client, key)
    auth = {"Authorization": f"Bearer {key}"}
    answer = client.post(
        "/v1/review/notes/adm-1/decisions",
        json={"version": 0, "decisions": [decision]},
        headers=auth,
    )
    assert answer.status_code == status and words in answer.json()["detail"]
    assert client.get("/v1/review/notes/adm-1", headers=auth).json()["version"] == 0
    missing = client.post(
        "/v1/review/notes/nobody/decisions",
        json={"version": 0, "decisions": [{"code": "E11.9", "action": "accept"}]},
        headers=auth,
    )
    assert missing.status_code == 404


def test_catalogue_search_by_words_and_by_code(client: TestClient, key: str) -> None:
    auth = {"Authorization": f"Bearer {key}"}
    words = client.get("/v1/catalogue/search?q=diab nephr", headers=auth).json()
    assert words["hits"] and "E11.21" in [h["code"] for h in words["hits"]]
    assert all(
        "diab" in h["description"].lower() and "nephr" in h["description"].lower()
        for h in words["hits"]
    )
    code = client.get("/v1/catalogue/search?q=e11.2", headers=auth).json()
    assert [h["code"] for h in code["hits"]][:2] == ["E11.2", "E11.21"]
    assert code["hits"][1]["billable"] is True and code["hits"][0]["billable"] is False
    assert client.get("/v1/catalogue/search?q=zzqqxx", headers=auth).json()["hits"] == []
    schema = client.get("/openapi.json").json()["paths"]
    for path in (
        "/v1/review/notes",
        "/v1/review/notes/{note_id}",
        "/v1/review/notes/{note_id}/decisions",
        "/v1/review/notes/{note_id}/reviewed",
        "/v1/catalogue/search",
    ):
        assert path in schema


def test_the_worklist_filters_by_status_id_code_and_date_with_counts(
    client: TestClient, key: str
) -> None:
    auth = {"Authorization": f"Bearer {key}"}
    code_note(client, key, "adm-1")
    code_note(client, key, "adm-2")
    code_note(client, key, "clinic-3")
    client.post(
        "/v1/review/notes/adm-2/reviewed", json={"version": 0}, headers=auth
    ).raise_for_status()
    everything = client.get("/v1/review/notes", headers=auth).json()
    assert everything["counts"] == {"coded": 0, "needs_review": 2, "reviewed": 1}
    assert everything["total"] == 3
    reviewed = client.get("/v1/review/notes?status=reviewed", headers=auth).json()
    assert [i["id"] for i in reviewed["items"]] == ["adm-2"]
    adm = client.get("/v1/review/notes?id=adm", headers=auth).json()
    assert sorted(i["id"] for i in adm["items"]) == ["adm-1", "adm-2"]
    assert client.get("/v1/review/notes?code=i10", headers=auth).json()["total"] == 3
    assert client.get("/v1/review/notes?code=E11.21", headers=auth).json()["total"] == 0
    assert (
        client.get("/v1/review/notes?since=2999-01-01T00:00:00Z", headers=auth).json()["total"] == 0
    )
    token = login(client)
    page = client.get("/review?status=needs_review").text
    assert "adm-1" in page and "clinic-3" in page and "adm-2" not in page
    assert re.search(r'id="tab-reviewed">reviewed <span class="count">1<', page)
    assert token


def test_no_note_text_is_logged_by_the_review_api(client: TestClient, key: str) -> None:
    out = io.StringIO()
    configure_logging("DEBUG", json=True, stream=out)
    try:
        code_note(client, key)
        token = login(client)
        start, end = span(TEXT, "Diabetic nephropathy")
        client.post(
            "/v1/review/notes/adm-1/decisions",
            json={
                "version": 0,
                "decisions": [
                    {"code": "E11.9", "action": "accept"},
                    {"code": "E11.21", "action": "add", "evidence": [{"start": start, "end": end}]},
                ],
            },
            headers={"X-CSRF-Token": token},
        ).raise_for_status()
        client.get("/review/notes/adm-1")
    finally:
        logging.getLogger().handlers.clear()
    logged = out.getvalue()
    assert "review_decisions" in logged and PASSWORD not in logged
    assert "diabetes" not in logged.lower() and "nephropathy" not in logged.lower()


def test_users_hash_passwords_and_refuse_bad_names_and_disabled_users(store: Store) -> None:
    from icdcoder.shared.store.schema import User

    with store.session() as session:
        stored = session.scalars(select(User.password_hash).where(User.name == "ana")).one()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    assert authenticate(store, "ana", PASSWORD) == "ana"
    with pytest.raises(UserError, match="exists"):
        create_user(store, "ana", PASSWORD)
    with pytest.raises(UserError, match="at least"):
        create_user(store, "cid", "short")
    with pytest.raises(UserError, match="user name"):
        create_user(store, "has space", PASSWORD)
    assert disable_user(store, "ana")
    assert authenticate(store, "ana", PASSWORD) is None


def test_user_create_reads_the_password_from_stdin_never_argv(
    settings: Settings, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = settings.store.url.get_secret_value()
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert main(["user", "create", "dora", "--store", url]) == 0
    assert authenticate(store, "dora", PASSWORD) == "dora"
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert main(["user", "create", "dora", "--store", url]) == 2


def test_reviews_export_to_a_memory_the_packs_read_and_to_a_training_corpus(
    client: TestClient,
    key: str,
    settings: Settings,
    store: Store,
    tmp_path: Path,
    catalogue: Catalogue,
    capsys: pytest.CaptureFixture[str],
) -> None:
    auth = {"Authorization": f"Bearer {key}"}
    code_note(client, key, "adm-1")
    code_note(client, key, "adm-2")  # coded, never reviewed: not exported
    start, end = span(TEXT, "Diabetic nephropathy")
    client.post(
        "/v1/review/notes/adm-1/decisions",
        json={
            "version": 0,
            "decisions": [
                {"code": "I10", "action": "reject"},
                {"code": "E11.21", "action": "add", "evidence": [{"start": start, "end": end}]},
                {"code": "N18.9", "action": "add"},
            ],
        },
        headers=auth,
    ).raise_for_status()
    client.post(
        "/v1/review/notes/adm-1/reviewed", json={"version": 1}, headers=auth
    ).raise_for_status()
    out = tmp_path / "memory.jsonl"
    url = settings.store.url.get_secret_value()
    assert main(["memory", "export", "--store", url, "--out", str(out)]) == 0
    assert "1 coded notes from 1 reviewed notes" in capsys.readouterr().out
    records = read_memory(out)
    examples = {(r.code, r.text) for r in records if isinstance(r, Example)}
    assert examples == {
        ("E11.9", "type 2 diabetes mellitus"),
        ("E11.21", "Diabetic nephropathy"),
    }
    notes = [r for r in records if isinstance(r, MemoryNote)]
    assert [(n.codes, n.source) for n in notes] == [(("E11.9", "E11.21", "N18.9"), "review:adm-1")]
    assert notes[0].text == TEXT
    rejected = read_rejected(out)
    assert [(r.rejected, r.text) for r in rejected] == [("I10", "essential hypertension")]
    loaded = load_memory(out, catalogue)  # what `pack build --memory` does with it
    assert len(loaded.examples) == 2 and loaded.dropped_codes == ()
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(line["source"] == "review:adm-1" for line in lines)
    corpus = ReviewedCorpus(ReviewStore(store))
    cases = corpus.cases()
    assert [(c.case_id, c.codes) for c in cases] == [("adm-1", ("E11.9", "E11.21", "N18.9"))]
    assert not corpus.reported


def test_export_with_nothing_reviewed_fails_with_one_line(
    client: TestClient, key: str, settings: Settings, tmp_path: Path
) -> None:
    code_note(client, key)
    url = settings.store.url.get_secret_value()
    assert main(["memory", "export", "--store", url, "--out", str(tmp_path / "m.jsonl")]) == 2
    assert not (tmp_path / "m.jsonl").exists()


# -- the store on PostgreSQL and SQLite


@pytest.fixture(params=["postgresql", "sqlite"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
        upgrade(make_engine(url))
        yield open_store(StoreConfig(url=url), auto_create=False)
        return
    with postgres_database() as url:
        upgrade(make_engine(url))
        store = open_store(StoreConfig(url=url), auto_create=False)
        yield store
        store.engine.dispose()


def test_the_migrations_match_the_tables(any_store: Store) -> None:
    with any_store.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []


def test_review_writes_and_conflicts_on_both_databases(any_store: Store) -> None:
    any_store.save_result(coded(NoteIn(note_id="n-1", text=TEXT)), text=TEXT)
    reviews = ReviewStore(any_store, PACK)

    def known(code: str) -> str | None:
        return code if code in ("E11.21", "E11.9", "I10") else None

    state = reviews.decide(
        "n-1", version=0, decisions=[DecisionIn("I10", "accept")], user="ana", known_code=known
    )
    assert state.version == 1 and state.final_codes() == ["E11.9", "I10"]
    with pytest.raises(StaleVersion):
        reviews.decide(
            "n-1", version=0, decisions=[DecisionIn("I10", "reject")], user="ben", known_code=known
        )
    state = reviews.decide(
        "n-1",
        version=1,
        decisions=[DecisionIn("E11.21", "add", ((0, 9),)), DecisionIn("E11.9", "reject")],
        user="ben",
        known_code=known,
    )
    assert state.version == 2 and state.final_codes() == ["I10", "E11.21"]
    state = reviews.mark_reviewed("n-1", version=2, user="ben")
    assert state.status == "reviewed" and state.reviewed_by == "ben"
    assert [s.note_id for s in reviews.reviewed()] == ["n-1"]
    reopened = reviews.decide(
        "n-1", version=3, decisions=[DecisionIn("E11.9", "accept")], user="ana", known_code=known
    )
    assert reopened.status == "needs_review" and list(reviews.reviewed()) == []
    counts = reviews.worklist().counts
    assert counts == {"coded": 0, "needs_review": 1, "reviewed": 0}


def test_the_next_note_follows_the_worklist_order_and_skips_reviewed_notes(
    any_store: Store,
) -> None:
    for note_id in ("n-1", "n-2", "n-3"):  # the worklist shows the newest first
        any_store.save_result(coded(NoteIn(note_id=note_id, text=TEXT)), text=TEXT)
    reviews = ReviewStore(any_store, PACK)
    assert [i.note_id for i in reviews.worklist().items] == ["n-3", "n-2", "n-1"]
    assert reviews.next_note("n-3") == "n-2"
    assert reviews.next_note("n-1") == "n-3"  # wraps round
    reviews.mark_reviewed("n-2", version=0, user="ana")
    assert reviews.next_note("n-3") == "n-1"
    reviews.mark_reviewed("n-1", version=0, user="ana")
    assert reviews.next_note("n-3") is None
    assert reviews.next_note("unknown") == "n-3"


def test_train_from_a_store_without_reviewed_notes_fails_with_one_line(
    client: TestClient,
    key: str,
    settings: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code_note(client, key)  # coded, not reviewed
    url = settings.store.url.get_secret_value()
    out = tmp_path / "pack"
    assert main(["train", "--store", url, "--out", str(out), "--name", "reviewed"]) == 2
    assert "reviewed-store: no cases to fit on" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--store", url, "--data", str(tmp_path), "--out", str(out), "--name", "x"])
    assert not out.exists()
