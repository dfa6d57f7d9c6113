"""The HTTP API (FastAPI), served by ``icdcoder serve``.

    POST /v1/notes[?wait=N]     a JSON note or a FHIR R4 DocumentReference -> 202 (queued), or
                                200 with the result when it is coded within N seconds
    GET  /v1/notes/{id}         status (queued, coding, coded, failed + reason) and CodedNote
    GET  /v1/notes/{id}/fhir    a FHIR R4 Bundle of Condition resources
    GET  /healthz/live|ready    open; /metrics (Prometheus) open; /docs and /openapi.json open
    /review, /v1/review/..., /v1/catalogue/search   the review page and its JSON API
                                (:mod:`icdcoder.api.review`: a reviewer's session or a key)

Every other route needs a bearer API key (:mod:`icdcoder.api.keys`). A note is idempotent by
id and content hash: sent twice it is one note version, and once coded the same result comes
back; a changed text is a new version. Errors are RFC 9457 problem details that name fields
and sizes, never the note's text; nothing here logs text.
"""

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from http import HTTPStatus
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi_offline import FastAPIOffline
from prometheus_client import CollectorRegistry, Counter
from prometheus_fastapi_instrumentator import Instrumentator
from starlette.exceptions import HTTPException as StarletteHTTPException

from icdcoder import __version__
from icdcoder.api.coding import Coding, InProcessCoding
from icdcoder.api.intake import ApiProblem, NoteRequest, parse_submission
from icdcoder.api.keys import KeyRing
from icdcoder.api.limits import BodyLimit
from icdcoder.api.review import add_review
from icdcoder.api.views import NoteAccepted, NoteView, note_view
from icdcoder.shared.catalogue import Catalogue, load_catalogue
from icdcoder.shared.fhir import bundle
from icdcoder.shared.messages import NoteIn
from icdcoder.shared.pack import OpenPack
from icdcoder.shared.settings import Settings
from icdcoder.shared.store.repository import Store

PROBLEM = "application/problem+json"
FHIR_JSON = "application/fhir+json"


def problem(status: int, title: str, detail: str, **headers: str) -> JSONResponse:
    return JSONResponse(
        {"type": "about:blank", "title": title, "status": status, "detail": detail},
        status_code=status,
        media_type=PROBLEM,
        headers=headers or None,
    )


def _problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {
        status: {"description": "problem details", "content": {PROBLEM: {}}} for status in statuses
    }


def create_app(
    settings: Settings,
    *,
    store: Store,
    coding: Coding,
    keys: KeyRing,
    pack: str,
    auth: bool = True,
    catalogue: Callable[[], Catalogue] | None = None,
) -> FastAPI:
    """The API; ``catalogue`` loads the catalogue the review page searches (on first use;
    default: the FY2026 catalogue, through the settings' cache folder)."""
    if catalogue is None:
        catalogue = partial(load_catalogue, cache_dir=settings.cache_dir)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await coding.start()
        try:
            yield
        finally:
            await coding.stop()

    app = FastAPIOffline(
        title="icdcoder",
        version=__version__,
        summary="ICD-10-CM codes for clinical notes, each with its evidence span",
        lifespan=lifespan,
        redoc_url=None,
    )
    registry = CollectorRegistry()
    Instrumentator(registry=registry, excluded_handlers=["/metrics", "/healthz/.*"]).instrument(
        app
    ).expose(app, endpoint="/metrics", include_in_schema=False)
    submitted = Counter(
        "icdcoder_api_notes_submitted",
        "Notes received, by outcome (queued, coded, duplicate, refused)",
        ["outcome"],
        registry=registry,
    )
    app.add_middleware(BodyLimit, max_bytes=settings.api.max_body_bytes)

    @app.exception_handler(ApiProblem)
    async def _problem(request: Request, exc: ApiProblem) -> JSONResponse:
        if request.url.path == "/v1/notes":
            submitted.labels("refused").inc()
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
        return problem(exc.status, exc.title, exc.detail, **headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        """FastAPI's own refusals (a body that is not JSON, an unknown path or method) as
        problem details too, like every other error of the API."""
        return problem(
            exc.status_code,
            HTTPStatus(exc.status_code).phrase,
            str(exc.detail),
            **(exc.headers or {}),
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        return problem(422, "Invalid request", problems)

    bearer = HTTPBearer(auto_error=False, description="an API key: icdcoder api-key create")

    def caller(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
    ) -> str:
        if not auth:
            return "anonymous"
        who = keys.who(credentials.credentials if credentials else None)
        if who is None:
            raise ApiProblem(401, "Unauthorized", "a valid API key is needed (Bearer)")
        return who

    Caller = Annotated[str, Depends(caller)]
    max_chars = settings.segmenter.max_note_chars
    max_wait = settings.api.max_wait_s

    @app.post(
        "/v1/notes",
        status_code=202,
        response_model=NoteAccepted,
        responses={200: {"model": NoteView}, **_problem_responses(400, 401, 413, 415, 422)},
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": NoteRequest.model_json_schema()},
                    FHIR_JSON: {
                        "schema": {
                            "type": "object",
                            "description": "a FHIR R4 DocumentReference with a text/plain "
                            "attachment (base64 data); its id becomes the note id",
                            "required": ["resourceType", "id", "status", "content"],
                            "properties": {"resourceType": {"const": "DocumentReference"}},
                        }
                    },
                },
            }
        },
        summary="Submit a note to code",
    )
    async def submit(
        request: Request,
        _: Caller,
        wait: Annotated[
            float, Query(ge=0, le=max_wait, description="seconds to wait (200 when coded)")
        ] = 0.0,
    ) -> Response:
        body = await request.body()
        note = parse_submission(body, request.headers.get("content-type", ""), max_chars)
        version, created = store.register(
            note.note_id, note.text, source="api", metadata=note.metadata
        )
        current = store.latest(note.note_id, pack=pack)
        if current is not None and current.note.pk == version.pk and current.coded is not None:
            submitted.labels("duplicate").inc()
            return _view(current, status_code=200)
        if not created and version.status in ("failed", "coded"):
            store.set_status(version.pk, "queued")  # failed before, or coded by another pack
        await coding.submit(version, NoteIn(note_id=note.note_id, text=note.text), fresh=created)
        submitted.labels("queued").inc()
        status = await coding.wait(version, wait) if wait > 0 else version.status
        if status == "coded":
            stored = store.latest(note.note_id, pack=pack)
            if stored is not None and stored.coded is not None:
                submitted.labels("coded").inc()
                return _view(stored, status_code=200)
        accepted = NoteAccepted.of(note.note_id, version.content_hash, status or "queued")
        return JSONResponse(accepted.model_dump(mode="json"), status_code=202)

    @app.get(
        "/v1/notes/{note_id}",
        response_model=NoteView,
        responses=_problem_responses(401, 404),
        summary="A note's status and codes",
    )
    async def read(note_id: str, _: Caller) -> Response:
        stored = store.latest(note_id, pack=pack)
        if stored is None:
            raise ApiProblem(404, "Not found", "no note with this id")
        return _view(stored)

    @app.get(
        "/v1/notes/{note_id}/fhir",
        responses={
            200: {"description": "a FHIR R4 Bundle of Conditions", "content": {FHIR_JSON: {}}},
            **_problem_responses(401, 404, 409),
        },
        summary="A note's codes as a FHIR R4 Bundle of Condition resources",
    )
    async def read_fhir(note_id: str, _: Caller) -> Response:
        stored = store.latest(note_id, pack=pack)
        if stored is None:
            raise ApiProblem(404, "Not found", "no note with this id")
        if stored.coded is None:
            raise ApiProblem(409, "Not coded", f"the note is {stored.note.status}, not coded")
        resource = bundle(stored.coded, stored.note.metadata, when=stored.note.updated_at)
        return Response(resource.model_dump_json(exclude_none=True), media_type=FHIR_JSON)

    add_review(app, settings, store=store, keys=keys, pack=pack, catalogue=catalogue)

    @app.get("/healthz/live", status_code=204, include_in_schema=False)
    async def live() -> Response:
        return Response(status_code=204)

    @app.get("/healthz/ready", status_code=204, include_in_schema=False)
    async def ready() -> Response:
        return Response(status_code=204 if coding.ready else 503)

    return app


def _view(stored: Any, status_code: int = 200) -> JSONResponse:
    return JSONResponse(note_view(stored).model_dump(mode="json"), status_code=status_code)


def in_process_app(settings: Settings, *, store: Store, opened: OpenPack, keys: KeyRing) -> FastAPI:
    """The API coding notes in its own process with one loaded pack, whose catalogue the
    review page's search shares (scripts and benchmarks that serve a pack they hold)."""
    from icdcoder.bootstrap import build_pipeline

    return create_app(
        settings,
        store=store,
        coding=InProcessCoding(
            store, lambda: build_pipeline(settings, opened=opened, progress=None)
        ),
        keys=keys,
        pack=opened.pack.id,
        catalogue=lambda: opened.catalogue,
    )
