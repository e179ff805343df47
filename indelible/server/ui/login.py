"""Signing in and out of the web UI, and its static files.

``POST /login`` takes an API key once: it is admitted exactly as an API request
(``server.auth.admit``: the failed-authentication limit, ``audit.auth_failed`` in the operator
log), then exchanged for a session cookie (HttpOnly, SameSite=Strict, Secure per
``ui_secure_cookie``) that names the key, never holds it. Both are recorded in the key's log
(``audit.login``, ``audit.logout``).
"""

from __future__ import annotations

from importlib import resources
from typing import Annotated

from fastapi import APIRouter, Path, Request
from starlette.responses import RedirectResponse, Response

from indelible.errors import Forbidden, IndelibleError, NotFound
from indelible.server.auth import admit, runtime_of
from indelible.server.ui.session import LOGIN_COOKIE_SECONDS
from indelible.server.ui.web import (
    COOKIE,
    LOGIN_COOKIE,
    SECURE_COOKIE,
    Page,
    cookie_secure,
    error_page,
    find_session,
    page,
    read_form,
    render,
    security_headers,
    ui_state,
)
from indelible.service.access import Permission

__all__ = ["router"]

router = APIRouter(include_in_schema=False)

_STATIC = {"ui.css": "text/css; charset=utf-8", "ui.js": "text/javascript; charset=utf-8"}


def safe_next(target: str | None) -> str:
    """Where to go after login: a path of this site only (never another origin)."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/search"
    if any(ord(char) < 0x20 for char in target) or "\\" in target:
        return "/search"
    return target


def _login_form(
    request: Request, status: int = 200, message: str | None = None, target: str | None = None
) -> Response:
    ui = ui_state(request)
    nonce_cookie = ui.sessions.login_nonce(ui.runtime.clock_ms())
    nonce = nonce_cookie.split(".")[1]
    response = render(
        ui,
        "login.html",
        status,
        login_csrf=ui.sessions.csrf("login:" + nonce),
        next=safe_next(target or request.query_params.get("next")),
        message=message,
    )
    response.set_cookie(
        LOGIN_COOKIE,
        nonce_cookie,
        max_age=LOGIN_COOKIE_SECONDS,
        path="/login",
        httponly=True,
        samesite="strict",
        secure=cookie_secure(request, ui),
    )
    return security_headers(response)


@router.get("/")
async def home(request: Request) -> Response:
    """The search page when signed in, else the login page."""
    signed_in = find_session(request, ui_state(request)) is not None
    return security_headers(RedirectResponse("/search" if signed_in else "/login", 303))


@router.get("/login")
async def login_page(request: Request) -> Response:
    """The login form: an API key in, a session cookie out."""
    return _login_form(request)


@router.post("/login")
async def login(request: Request) -> Response:
    """Exchange an API key for a session cookie (the key is checked as the API checks it)."""
    ui = ui_state(request)
    runtime = runtime_of(request)
    form: dict[str, str] = {}
    try:
        form = await read_form(request)
        nonce = ui.sessions.check_login_nonce(request.cookies.get(LOGIN_COOKIE), runtime.clock_ms())
        if nonce is None or not ui.sessions.csrf_ok("login:" + nonce, form.get("csrf")):
            raise Forbidden("the login form expired or was not sent by this site: try again")
        principal = await admit(request, form.get("key", "").strip() or None, Permission.EVIDENCE)
    except IndelibleError as exc:
        if exc.code in ("unauthenticated", "rate_limited"):
            status = 401 if exc.code == "unauthenticated" else 429
            return _login_form(request, status, exc.message, form.get("next"))
        return security_headers(error_page(ui, exc))
    row = runtime.keys.active(principal.key_id)
    expires = runtime.clock_ms() + runtime.ui.session_minutes * 60_000
    token = ui.sessions.issue(principal.key_id, row.secret_hash, expires)
    session = ui.sessions.peek(token)
    assert session is not None
    current = Page(request, ui, principal, session, {})
    await runtime.record(
        principal.log_id,
        "audit.login",
        actor=principal.actor(),
        action="login",
        request=current.info(),
        data={"session_minutes": runtime.ui.session_minutes},
    )
    response = RedirectResponse(safe_next(form.get("next")), 303)
    secure = cookie_secure(request, ui)
    response.set_cookie(
        SECURE_COOKIE if secure else COOKIE,
        token,
        max_age=runtime.ui.session_minutes * 60,
        path="/",
        httponly=True,
        samesite="strict",
        secure=secure,
    )
    response.delete_cookie(LOGIN_COOKIE, path="/login")
    return security_headers(response)


@router.post("/logout")
@page(Permission.EVIDENCE)
async def logout(current: Page) -> Response:
    """End the session (refused from now on, its cookie cleared) and record it."""
    current.ui.sessions.end(current.session, current.runtime.clock_ms())
    await current.runtime.record(
        current.log_id,
        "audit.logout",
        actor=current.principal.actor(),
        action="logout",
        request=current.info(),
    )
    response = RedirectResponse("/login", 303)
    for name in (COOKIE, SECURE_COOKIE):
        response.delete_cookie(name, path="/", secure=name == SECURE_COOKIE, httponly=True)
    return response


@router.get("/static/{name}")
async def static(name: Annotated[str, Path(max_length=64)]) -> Response:
    """The UI's own stylesheet and script (no third-party assets)."""
    media = _STATIC.get(name)
    if media is None:
        raise NotFound(f"no static file {name!r}")
    body = resources.files("indelible.server.ui").joinpath("static", name).read_bytes()
    response = Response(body, media_type=media, headers={"Cache-Control": "public, max-age=300"})
    return security_headers(response)
