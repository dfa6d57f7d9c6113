"""The product on the bus, as a site runs it: ``icdcoder serve --mode bus`` (uvicorn), the four
stage workers and the store worker as processes, Redis, and a PostgreSQL store. 50 CodiEsp dev
notes are POSTed, half as JSON and half as FHIR R4 DocumentReferences; each comes back as a
CodedNote and as a FHIR Bundle that validates, the store holds one result per note, and no
log line holds note text."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fhir.resources.R4B.bundle import Bundle
from sqlalchemy import text

from icdcoder.shared.messages import NoteIn
from icdcoder.shared.store.engine import make_engine
from icdcoder.shared.store.migrate import upgrade
from tests.e2e.chaos_kit import FAST, RedisServer, Workers, dev_notes, free_port, wait
from tests.e2e.chaos_kit import leaked_fragments as leaks
from tests.store_fixtures import postgres_database

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
NOTES = 50
KEY = "e2e-" + os.urandom(12).hex()
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"


@pytest.fixture
def store_url() -> Iterator[str]:
    with postgres_database() as url:
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        yield url


def document(note: NoteIn) -> dict[str, object]:
    return {
        "resourceType": "DocumentReference",
        "id": note.note_id,
        "status": "current",
        "subject": {"reference": f"Patient/{note.note_id}"},
        "context": {"encounter": [{"reference": f"Encounter/{note.note_id}"}]},
        "content": [
            {
                "attachment": {
                    "contentType": "text/plain",
                    "data": base64.b64encode(note.text.encode()).decode(),
                }
            }
        ],
    }


def submit(client: httpx.Client, i: int, note: NoteIn) -> None:
    if i % 2:
        response = client.post(
            "/v1/notes",
            content=json.dumps(document(note)),
            headers={"Content-Type": "application/fhir+json"},
        )
    else:
        response = client.post("/v1/notes", json={"id": note.note_id, "text": note.text})
    assert response.status_code == 202, response.text


def test_fifty_notes_through_the_api_on_the_bus_into_postgresql(
    tmp_path: Path, store_url: str
) -> None:
    notes = dev_notes("api", NOTES)
    if len(notes) < NOTES:
        pytest.skip("CodiEsp dev notes not found")
    redis = RedisServer(tmp_path / "redis", "api-pw-77", persistent=True)
    redis.start()
    env = {
        "ICDCODER_BUS__REDIS_URL": redis.url,
        "ICDCODER_STORE__URL": store_url,
        "ICDCODER_STORE__TRIM_AFTER_S": "5",
        **FAST,
    }
    workers = Workers(tmp_path, env)
    port = free_port()
    server_log = tmp_path / "serve.log"
    server: subprocess.Popen[bytes] | None = None
    try:
        workers.start_all()
        workers.start("store")
        with server_log.open("wb") as out:
            server = subprocess.Popen(
                [sys.executable, "-m", "icdcoder", "serve", "--mode", "bus", "--port", str(port)],
                cwd=REPO,
                env={
                    **os.environ,
                    **env,
                    "PYTHONPATH": str(REPO),
                    "ICDCODER_API__KEYS": f"e2e:{hashlib.sha256(KEY.encode()).hexdigest()}",
                },
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        base = f"http://127.0.0.1:{port}"
        wait(lambda: _ready(base), "the API to be ready", timeout_s=120)
        headers = {"Authorization": f"Bearer {KEY}"}
        with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
            started = time.monotonic()
            for i, note in enumerate(notes):
                submit(client, i, note)
            wait(
                lambda: _coded(client, notes) == NOTES,
                "every note coded",
                timeout_s=900,
            )
            seconds = time.monotonic() - started
            for i, note in enumerate(notes):
                view = client.get(f"/v1/notes/{note.note_id}").json()
                result = view["result"]
                assert view["status"] == "coded" and result["note_id"] == note.note_id
                assert result["codes"], note.note_id
                for code in result["codes"]:
                    for span in code["evidence"]:
                        assert note.text[span["start"] : span["end"]] == span["text"]
                fhir = client.get(f"/v1/notes/{note.note_id}/fhir")
                assert fhir.headers["content-type"].startswith("application/fhir+json")
                bundle = Bundle.model_validate_json(fhir.content)
                entries = bundle.entry or []
                assert len(entries) == len(result["codes"])
                condition = entries[0].resource
                assert condition.code.coding[0].system == ICD10CM  # type: ignore[union-attr]
                if i % 2:  # DocumentReference: subject and encounter carried through
                    assert condition.subject.reference == f"Patient/{note.note_id}"  # type: ignore[union-attr]
        with make_engine(store_url).connect() as connection:
            results = connection.execute(text("select count(*) from results")).scalar()
            per_note = connection.execute(
                text("select count(*) from (select note_pk from results group by note_pk) x")
            ).scalar()
        assert results == per_note == NOTES
        logs = workers.output() + server_log.read_text(errors="replace")
        assert leaks(logs, notes) == []
        print(f"\n{NOTES} notes through the API on the bus: {NOTES / seconds:.2f} notes/s")
    finally:
        if server is not None:
            server.terminate()
            server.wait(60)
        workers.stop_all()
        redis.stop()


def _ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz/ready", timeout=2).status_code == 204
    except httpx.TransportError:
        return False


def _coded(client: httpx.Client, notes: list[NoteIn]) -> int:
    time.sleep(1)
    return sum(
        client.get(f"/v1/notes/{note.note_id}").json().get("status") == "coded" for note in notes
    )
