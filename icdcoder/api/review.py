"""The review page and its JSON API, added to the HTTP API by :func:`add_review`.

    GET  /login, POST /login, POST /logout      reviewers log in (a signed session cookie)
    GET  /review                                the worklist (HTML)
    GET  /review/notes/{id}                     a note to review (HTML; vanilla JS under
                                                /review/static, no CDN)
    GET  /v1/review/notes?status=&id=&code=&since=&until=    the worklist (JSON)
    GET  /v1/review/notes/{id}                  a note's codes, evidence, decisions, version
    POST /v1/review/notes/{id}/decisions        accept / reject / add codes (with the version)
    POST /v1/review/notes/{id}/reviewed         mark the note reviewed (with the version)
    GET  /v1/catalogue/search?q=                the current catalogue, by words or code

The JSON API takes a bearer API key (the decision is recorded as ``key:<name>``) or a
reviewer's session; a session's writes must also carry its CSRF token (``X-CSRF-Token``), and
the cookie is ``SameSite=Strict`` and ``HttpOnly``. There are no anonymous writes, even under
``serve --no-auth``. Nothing logs note or span text: events name notes, codes and users.
"""

import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, FastAPI, Form, Query, Request, Security
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.middleware.sessions import SessionMiddleware

from icdcoder.api.intake import ApiProblem
from icdcoder.api.keys import KeyRing
from icdcoder.api.review_models import (
    CatalogueHit,
    CatalogueSearchView,
    DecisionsRequest,
    ReviewedRequest,
    ReviewNoteView,
    WorklistView,
    note_view,
    worklist_view,
)
from icdcoder.api.users import authenticate, is_active
from icdcoder.review.highlight import Mark, segments
from icdcoder.review.search import CatalogueSearch
from icdcoder.shared.catalogue import Catalogue
from icdcoder.shared.logging import get_logger
from icdcoder.shared.settings import Settings
from icdcoder.shared.store.repository import Store
from icdcoder.shared.store.review import (
    REVIEW_STATUSES,
    BadDecision,
    ReviewNotFound,
    ReviewStatus,
    ReviewStore,
    StaleVersion,
)

log = get_logger("icdcoder.review")

HERE = Path(__file__).parent
SESSION_COOKIE = "icdcoder_session"
SESSION_HOURS = 12
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
LOOPBACK = ("127.0.0.1", "localhost", "::1")
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True)
class Reviewer:
    name: str
    via: str  # "session" or "key"


class CatalogueHolder:
    """The catalogue and its search, loaded once on first use (a few seconds)."""

    def __init__(self, load: Callable[[], Catalogue]) -> None:
        self._load = load
        self._lock = threading.Lock()
        self._catalogue: Catalogue | None = None
        self._search: CatalogueSearch | None = None

    def get(self) -> tuple[Catalogue, CatalogueSearch]:
        with self._lock:
            if self._catalogue is None or self._search is None:
                self._catalogue = self._load()
                self._search = CatalogueSearch(self._catalogue)
            return self._catalogue, self._search

    def known(self, code: str) -> str | None:
        info = self.get()[0].get(code)
        return info.code if info is not None else None

    def describe(self, code: str) -> str:
        info = self.get()[0].get(code)
        return info.description if info is not None else "(not in the current catalogue)"


def templates() -> Environment:
    return Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )


def add_review(
    app: FastAPI,
    settings: Settings,
    *,
    store: Store,
    keys: KeyRing,
    pack: str,
    catalogue: Callable[[], Catalogue],
) -> None:
    """Mount the review page, its assets and JSON API, and the session middleware on ``app``."""
    secret = settings.api.sessions_secret.get_secret_value() or secrets.token_urlsafe(32)
    app.add_middleware(
        SessionMiddleware,
        secret_key=secret,
        session_cookie=SESSION_COOKIE,
        max_age=SESSION_HOURS * 3600,
        same_site="strict",
        https_only=settings.http.host not in LOOPBACK,
    )
    app.mount("/review/static", StaticFiles(directory=HERE / "static"), name="review-static")
    reviews = ReviewStore(store, pack)
    holder = CatalogueHolder(catalogue)
    env = templates()
    bearer = HTTPBearer(auto_error=False, description="an API key: icdcoder api-key create")
    cookie = APIKeyCookie(
        name=SESSION_COOKIE,
        auto_error=False,
        description="a reviewer's session (POST /login); writes also need X-CSRF-Token",
    )

    def session_user(request: Request) -> str | None:
        user = request.session.get("user")
        if isinstance(user, str) and is_active(store, user):
            return user
        if user is not None:
            request.session.clear()
        return None

    def reviewer(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
        _cookie: Annotated[str | None, Security(cookie)],
    ) -> Reviewer:
        if credentials is not None:
            who = keys.who(credentials.credentials)
            if who is None:
                raise ApiProblem(401, "Unauthorized", "the API key is not valid")
            return Reviewer(f"key:{who}", "key")
        user = session_user(request)
        if user is None:
            raise ApiProblem(401, "Unauthorized", "log in (/login) or send an API key (Bearer)")
        if request.method not in SAFE_METHODS:
            token = request.headers.get("x-csrf-token", "")
            if not secrets.compare_digest(token, str(request.session.get("csrf", ""))):
                raise ApiProblem(
                    403, "Forbidden", "the CSRF token is missing or wrong: reload the page"
                )
        return Reviewer(user, "session")

    Who = Annotated[Reviewer, Depends(reviewer)]
    problems: dict[int | str, dict[str, Any]] = {
        s: {"description": "problem details", "content": {"application/problem+json": {}}}
        # 400: a body that is not JSON (FastAPI answers it before any route code runs)
        for s in (400, 401, 403, 404, 409, 422)
    }
    api = APIRouter(prefix="/v1", tags=["review"], responses=problems)

    @api.get("/review/notes", response_model=WorklistView, summary="The review worklist")
    def worklist(
        _: Who,
        status: Annotated[
            ReviewStatus | None, Query(description="coded, needs_review or reviewed")
        ] = None,
        id: Annotated[str | None, Query(max_length=200, description="note ids starting so")] = None,
        code: Annotated[
            str | None, Query(max_length=10, description="notes with this code")
        ] = None,
        since: Annotated[datetime | None, Query(description="coded at or after")] = None,
        until: Annotated[datetime | None, Query(description="coded before")] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    ) -> WorklistView:
        found = reviews.worklist(
            status=status,
            note_id=id,
            code=code,
            since=since,
            until=until,
            limit=limit,
            offset=offset,
        )
        return worklist_view(found, limit, offset)

    def state_or_404(note_id: str) -> ReviewNoteView:
        state = reviews.note(note_id)
        if state is None:
            raise ApiProblem(404, "Not found", "no coded note with this id")
        return note_view(state, holder.describe)

    @api.get(
        "/review/notes/{note_id}",
        response_model=ReviewNoteView,
        summary="A note to review: text, codes with evidence, decisions, version",
    )
    def read_note(note_id: str, _: Who) -> ReviewNoteView:
        return state_or_404(note_id)

    @api.post(
        "/review/notes/{note_id}/decisions",
        response_model=ReviewNoteView,
        summary="Accept, reject or add codes (409 when the version is stale)",
    )
    def decide(note_id: str, body: DecisionsRequest, who: Who) -> ReviewNoteView:
        try:
            state = reviews.decide(
                note_id,
                version=body.version,
                decisions=[d.decision() for d in body.decisions],
                user=who.name,
                known_code=holder.known,
            )
        except ReviewNotFound:
            raise ApiProblem(404, "Not found", "no coded note with this id") from None
        except StaleVersion as exc:
            log.info("review_conflict", note_id=note_id, user=who.name, seen=exc.seen)
            raise ApiProblem(409, "Conflict", str(exc)) from None
        except BadDecision as exc:
            raise ApiProblem(422, "Bad decision", str(exc)) from None
        log.info(
            "review_decisions",
            note_id=note_id,
            user=who.name,
            version=state.version,
            decisions=[f"{d.action}:{d.code}" for d in body.decisions],
        )
        return note_view(state, holder.describe)

    @api.post(
        "/review/notes/{note_id}/reviewed",
        response_model=ReviewNoteView,
        summary="Mark the note reviewed (409 when the version is stale)",
    )
    def reviewed(note_id: str, body: ReviewedRequest, who: Who) -> ReviewNoteView:
        try:
            state = reviews.mark_reviewed(note_id, version=body.version, user=who.name)
        except ReviewNotFound:
            raise ApiProblem(404, "Not found", "no coded note with this id") from None
        except StaleVersion as exc:
            raise ApiProblem(409, "Conflict", str(exc)) from None
        log.info("review_reviewed", note_id=note_id, user=who.name, version=state.version)
        return note_view(state, holder.describe)

    @api.get(
        "/catalogue/search",
        response_model=CatalogueSearchView,
        summary="Search the current catalogue by words or code (typeahead)",
    )
    def search(
        _: Who,
        q: Annotated[str, Query(max_length=100, description="words or a code prefix")],
        limit: Annotated[int, Query(ge=1, le=50)] = 20,
    ) -> CatalogueSearchView:
        index = holder.get()[1]
        hits = index.search(q, limit)
        return CatalogueSearchView(
            query=q,
            catalogue_version=index.version,
            hits=[
                CatalogueHit(code=h.code, description=h.description, billable=h.billable)
                for h in hits
            ],
        )

    app.include_router(api)

    # -- pages

    def page(name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        html = env.get_template(name).render(**context)
        return HTMLResponse(html, status_code=status_code, headers=PAGE_HEADERS)

    def to_login(request: Request) -> RedirectResponse:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?{urlencode({'next': target})}", status_code=303)

    def csrf(request: Request) -> str:
        token = request.session.get("csrf")
        if not isinstance(token, str):
            token = secrets.token_urlsafe(24)
            request.session["csrf"] = token
        return token

    @app.get("/login", include_in_schema=False)
    def login_form(request: Request, next: str = "/review") -> Response:
        return page("login.html", next=safe_next(next), error=None, user=session_user(request))

    @app.post("/login", include_in_schema=False)
    def login(
        request: Request,
        username: Annotated[str, Form(max_length=100)],
        password: Annotated[str, Form(max_length=1000)],
        next: Annotated[str, Form(max_length=2000)] = "/review",
    ) -> Response:
        user = authenticate(store, username, password)
        if user is None:
            log.info("review_login_failed")
            return page(
                "login.html",
                status_code=401,
                next=safe_next(next),
                error="Unknown user or wrong password.",
                user=None,
            )
        request.session.clear()
        request.session.update({"user": user, "csrf": secrets.token_urlsafe(24)})
        log.info("review_login", user=user)
        return RedirectResponse(safe_next(next), status_code=303)

    @app.post("/logout", include_in_schema=False)
    def logout(request: Request, token: Annotated[str, Form()] = "") -> Response:
        if secrets.compare_digest(token, str(request.session.get("csrf", ""))):
            request.session.clear()
        return RedirectResponse("/login", status_code=303)

    @app.get("/review", include_in_schema=False)
    def worklist_page(
        request: Request,
        status: str = "",
        id: str = "",
        code: str = "",
        since: str = "",
        until: str = "",
        offset: int = 0,
    ) -> Response:
        user = session_user(request)
        if user is None:
            return to_login(request)
        wanted = next((s for s in REVIEW_STATUSES if s == status), None)
        limit = 50
        found = reviews.worklist(
            status=wanted,
            note_id=id[:200] or None,
            code=code[:10] or None,
            since=_day(since),
            until=_day(until, end=True),
            limit=limit,
            offset=max(0, offset),
        )
        filters = {"id": id, "code": code, "since": since, "until": until}
        return page(
            "worklist.html",
            user=user,
            csrf=csrf(request),
            worklist=found,
            status=wanted or "",
            filters=filters,
            statuses=REVIEW_STATUSES,
            query=lambda **extra: urlencode(
                {k: v for k, v in ({**filters, "status": wanted or ""} | extra).items() if v}
            ),
            offset=offset,
            limit=limit,
            quote=lambda s: quote(s, safe=""),
        )

    @app.get("/review/notes/{note_id}", include_in_schema=False)
    def note_page(request: Request, note_id: str) -> Response:
        user = session_user(request)
        if user is None:
            return to_login(request)
        state = reviews.note(note_id)
        if state is None:
            return page(
                "missing.html", status_code=404, user=user, csrf=csrf(request), note_id=note_id
            )
        view = note_view(state, holder.describe)
        marks = [
            Mark(e.start, e.end, code=index)
            for index, code in enumerate(view.codes)
            for e in code.evidence
        ] + [Mark(x.start, x.end, reason=x.reason, excluded_code=x.code) for x in view.excluded]
        following = reviews.next_note(note_id)
        return page(
            "note.html",
            user=user,
            csrf=csrf(request),
            note=view,
            segments=segments(view.text or "", marks),
            next_note=f"/review/notes/{quote(following, safe='')}" if following else "",
            quote=lambda s: quote(s, safe=""),
        )


def safe_next(target: str) -> str:
    """Only a path of this site (no scheme, no host, no ``//``) is followed after login."""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/review"


def _day(raw: str, *, end: bool = False) -> datetime | None:
    """``YYYY-MM-DD`` from the worklist's date fields (until: the day after, exclusive)."""
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        return None
    if end:
        day = day + timedelta(days=1)
    return datetime.combine(day, time(), tzinfo=UTC)
