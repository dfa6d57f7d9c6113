"""The HTTP API through httpx (FastAPI's TestClient), in process and over the bus, with a
fake coder: intake, idempotency, versions, FHIR, auth, limits and every bad input."""

from __future__ import annotations

import base64
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as sync_redis
from fastapi.testclient import TestClient
from fhir.resources.R4B.bundle import Bundle

from icdcoder.api.app import create_app
from icdcoder.api.coding import BusCoding, InProcessCoding
from icdcoder.api.keys import create_key, key_ring
from icdcoder.shared.logging import configure_logging
from icdcoder.shared.messages import CodedNote, NoteIn
from icdcoder.shared.notes import NoteRejected, content_hash
from icdcoder.shared.settings import ApiConfig, BusConfig, Settings, StoreConfig
from icdcoder.shared.store.migrate import open_store
from icdcoder.shared.store.repository import Store
from icdcoder.shared.streams import NOTES
from tests.conftest import flushed_redis
from tests.integration.test_bus_redis import TEST_URL
from tests.integration.test_store import PACK, coded_for

TEXT = "Discharge diagnoses: type 2 diabetes mellitus and essential hypertension."


class FakeCoder:
    def __init__(self) -> None:
        self.coded: list[str] = []

    async def code_in_threads(self, note: NoteIn) -> CodedNote:
        self.coded.append(note.note_id)
        if "UNCODABLE" in note.text:
            raise NoteRejected("the core refuses this note")
        return coded_for(note)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings().with_section(
        store=StoreConfig(url=f"sqlite:///{tmp_path / 'store.db'}"),
        api=ApiConfig(max_body_bytes=2 * 2**20, max_wait_s=10),
    )


@pytest.fixture
def store(settings: Settings) -> Store:
    return open_store(settings.store)


@pytest.fixture
def key(store: Store) -> str:
    return create_key(store, "tests")


@pytest.fixture
def coder() -> FakeCoder:
    return FakeCoder()


@pytest.fixture
def client(settings: Settings, store: Store, coder: FakeCoder, key: str) -> Iterator[TestClient]:
    app = create_app(
        settings,
        store=store,
        coding=InProcessCoding(store, lambda: coder),
        keys=key_ring("", store),
        pack=PACK,
    )
    with TestClient(app, headers={"Authorization": f"Bearer {key}"}) as test_client:
        yield test_client


def document(note_id: str, text: str | bytes, **extra: object) -> dict[str, object]:
    raw = text.encode() if isinstance(text, str) else text
    return {
        "resourceType": "DocumentReference",
        "id": note_id,
        "status": "current",
        "subject": {"reference": "Patient/42"},
        "context": {"encounter": [{"reference": "Encounter/7"}]},
        "content": [
            {"attachment": {"contentType": "text/plain", "data": base64.b64encode(raw).decode()}}
        ],
        **extra,
    }


def test_a_note_is_coded_and_readable_as_codes_and_as_fhir(client: TestClient) -> None:
    queued = client.post("/v1/notes", json={"id": "adm-1", "text": TEXT})
    assert queued.status_code in (200, 202)
    coded = client.post("/v1/notes?wait=5", json={"id": "adm-1", "text": TEXT})
    assert coded.status_code == 200
    body = coded.json()
    assert body["status"] == "coded" and body["result"]["codes"][0]["code"] == "E11.9"
    assert body["links"] == {"self": "/v1/notes/adm-1", "fhir": "/v1/notes/adm-1/fhir"}
    read = client.get("/v1/notes/adm-1").json()
    assert read["result"] == body["result"] and read["content_hash"] == content_hash(TEXT)
    fhir = client.get("/v1/notes/adm-1/fhir")
    assert fhir.headers["content-type"].startswith("application/fhir+json")
    bundle = Bundle.model_validate_json(fhir.content)
    condition = bundle.entry[0].resource  # type: ignore[index]
    assert condition.code.coding[0].system == "http://hl7.org/fhir/sid/icd-10-cm"  # type: ignore[union-attr]
    statuses = {e.resource.verificationStatus.coding[0].code for e in bundle.entry}  # type: ignore[union-attr]
    assert statuses == {"confirmed", "provisional"}


def test_the_same_note_twice_is_one_result_and_a_changed_text_a_new_version(
    client: TestClient, coder: FakeCoder
) -> None:
    first = client.post("/v1/notes?wait=5", json={"id": "n1", "text": TEXT}).json()
    again = client.post("/v1/notes", json={"id": "n1", "text": TEXT})
    assert again.status_code == 200 and again.json()["result"] == first["result"]
    assert coder.coded == ["n1"]
    changed = client.post("/v1/notes?wait=5", json={"id": "n1", "text": TEXT + " Gout."})
    assert changed.status_code == 200 and changed.json()["version"] != first["version"]
    assert coder.coded == ["n1", "n1"]
    assert client.get("/v1/notes/n1").json()["version"] == changed.json()["version"]


def test_a_fhir_document_reference_is_a_note(client: TestClient) -> None:
    response = client.post(
        "/v1/notes?wait=5",
        content=json.dumps(document("doc-9", TEXT)),
        headers={"Content-Type": "application/fhir+json"},
    )
    assert response.status_code == 200
    assert response.json()["metadata"]["subject"] == "Patient/42"
    bundle = client.get("/v1/notes/doc-9/fhir").json()
    condition = bundle["entry"][0]["resource"]
    assert condition["subject"] == {"reference": "Patient/42"}
    assert condition["encounter"] == {"reference": "Encounter/7"}


def test_a_note_the_pipeline_refuses_is_failed_with_its_reason(client: TestClient) -> None:
    response = client.post("/v1/notes?wait=5", json={"id": "bad-1", "text": "UNCODABLE"})
    assert response.status_code == 202
    read = client.get("/v1/notes/bad-1").json()
    assert read["status"] == "failed" and "refuses" in read["failure"]
    assert client.get("/v1/notes/bad-1/fhir").status_code == 409


BAD = [
    ("empty text", {"json": {"id": "e1", "text": "   "}}, 422, "empty"),
    ("unknown field", {"json": {"id": "e1", "text": TEXT, "x": 1}}, 422, "extra_forbidden"),
    ("bad id", {"json": {"id": "has space", "text": TEXT}}, 422, "id"),
    (
        "not json",
        {"content": b"{oops", "headers": {"Content-Type": "application/json"}},
        400,
        "JSON",
    ),
    ("wrong type", {"content": b"id=1", "headers": {"Content-Type": "text/plain"}}, 415, "json"),
    (
        "base64 not utf-8",
        {
            "content": json.dumps(document("d1", b"caf\xe9")),
            "headers": {"Content-Type": "application/fhir+json"},
        },
        422,
        "UTF-8",
    ),
    (
        "bad base64",
        {
            "content": json.dumps(
                document(
                    "d1",
                    "x",
                    content=[{"attachment": {"contentType": "text/plain", "data": "%%%"}}],
                )
            ),
            "headers": {"Content-Type": "application/fhir+json"},
        },
        422,
        "base64",
    ),
    ("10 MB body", {"json": {"id": "big", "text": "x" * 10_000_000}}, 413, "over"),
    ("NUL", {"json": {"id": "z1", "text": "a\u0000b"}}, 422, "NUL"),
]


@pytest.mark.parametrize(
    ("name", "request_kwargs", "status", "words"), BAD, ids=[b[0] for b in BAD]
)
def test_bad_input_is_the_right_4xx_with_a_clear_message_and_nothing_is_enqueued(
    client: TestClient,
    store: Store,
    coder: FakeCoder,
    name: str,
    request_kwargs: dict[str, object],
    status: int,
    words: str,
) -> None:
    response = client.post("/v1/notes", **request_kwargs)  # type: ignore[arg-type]
    assert response.status_code == status, response.text
    problem = response.json()
    assert problem["status"] == status and words.lower() in problem["detail"].lower()
    assert response.headers["content-type"].startswith("application/problem+json")
    assert store.counts().get("notes_queued", 0) == 0 and coder.coded == []
    assert "caf" not in response.text and "xxxxxxxx" not in response.text


def test_no_key_or_a_wrong_key_is_401_and_health_is_open(client: TestClient) -> None:
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer nope"}):
        response = client.post("/v1/notes", json={"id": "n", "text": TEXT}, headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert client.get("/v1/notes/n", headers=headers).status_code == 401
    assert client.get("/healthz/live", headers={"Authorization": ""}).status_code == 204
    assert client.get("/metrics", headers={"Authorization": ""}).status_code == 200
    docs = client.get("/docs", headers={"Authorization": ""}).text
    assert "static-offline-docs" in docs and "cdn" not in docs.lower()
    assert client.get("/openapi.json").json()["paths"]["/v1/notes"]["post"]


def test_wait_is_bounded_and_unknown_notes_are_404(client: TestClient) -> None:
    response = client.post("/v1/notes?wait=11", json={"id": "n", "text": TEXT})
    assert response.status_code == 422 and "wait" in response.json()["detail"]
    assert client.get("/v1/notes/nobody").status_code == 404


def test_no_note_text_is_logged(client: TestClient) -> None:
    out = io.StringIO()
    configure_logging("DEBUG", json=True, stream=out)
    try:
        client.post("/v1/notes?wait=5", json={"id": "log-1", "text": TEXT})
        client.post("/v1/notes", json={"id": "log-2", "text": "   "})
        client.post("/v1/notes?wait=5", json={"id": "log-3", "text": "UNCODABLE " + TEXT})
    finally:
        logging.getLogger().handlers.clear()
    assert "diabetes" not in out.getvalue() and "hypertension" not in out.getvalue()


@pytest.fixture
def bus_db() -> Iterator[sync_redis.Redis]:
    yield from flushed_redis(TEST_URL)


def test_bus_mode_publishes_once_and_answers_from_the_store(
    settings: Settings, store: Store, key: str, bus_db: sync_redis.Redis
) -> None:
    bus = BusConfig(redis_url=TEST_URL)
    app = create_app(
        settings, store=store, coding=BusCoding(store, bus), keys=key_ring("", store), pack=PACK
    )
    with TestClient(app, headers={"Authorization": f"Bearer {key}"}) as client:
        assert client.post("/v1/notes", json={"id": "b1", "text": TEXT}).status_code == 202
        assert client.post("/v1/notes", json={"id": "b1", "text": TEXT}).status_code == 202
        assert bus_db.xlen(NOTES) == 1  # queued once, not twice
        store.save_result(coded_for(NoteIn(note_id="b1", text=TEXT)))  # as the store worker does
        done = client.post("/v1/notes?wait=2", json={"id": "b1", "text": TEXT})
        assert done.status_code == 200 and done.json()["status"] == "coded"


def test_notes_submitted_while_the_coder_loads_are_coded_once(
    settings: Settings, store: Store, key: str
) -> None:
    import threading

    loaded = threading.Event()
    coder = FakeCoder()

    def slow_coder() -> FakeCoder:
        loaded.wait(timeout=30)
        return coder

    app = create_app(
        settings,
        store=store,
        coding=InProcessCoding(store, slow_coder),
        keys=key_ring("", store),
        pack=PACK,
    )
    with TestClient(app, headers={"Authorization": f"Bearer {key}"}) as client:
        for note_id in ("q1", "q2"):
            assert client.post("/v1/notes", json={"id": note_id, "text": TEXT}).status_code == 202
        loaded.set()
        for note_id in ("q1", "q2"):
            assert (
                client.post("/v1/notes?wait=10", json={"id": note_id, "text": TEXT}).json()[
                    "status"
                ]
                == "coded"
            )
    assert sorted(coder.coded) == ["q1", "q2"]
