"""What every web UI page shares: sessions, CSRF, roles, rendering, headers and errors.

A page handler is decorated with :func:`page`, which, before the handler runs, finds the
session (none: a redirect to the login page), checks the role's permission exactly as the API
does (a refusal is written as ``audit.access_denied``, then a 403 page), and for a POST reads
the form and checks its CSRF token. Errors become HTML pages with the status the JSON API
would answer; every response carries the security headers and a ``Server-Timing`` header.
"""

from __future__ import annotations

import inspect
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from fastapi import Request
from jinja2 import Environment, PackageLoader, StrictUndefined
from starlette.responses import HTMLResponse, RedirectResponse, Response

from indelible.errors import (
    Forbidden,
    IndelibleError,
    InputError,
    LimitExceeded,
    MethodNotAllowed,
    NotFound,
    ReasonRequired,
    RetryLater,
    Unauthenticated,
)
from indelible.server.auth import client_address, deny, user_agent
from indelible.server.errors import status_for
from indelible.server.runtime import Runtime
from indelible.server.ui.session import Session, SessionKeys
from indelible.service.access import Permission, Principal
from indelible.service.activity import HourlyCounts
from indelible.service.audit import RequestInfo

__all__ = ["CSP", "Page", "UiState", "page", "security_headers", "ui_state"]

log = logging.getLogger("indelible.server")

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
MAX_FORM_BYTES = 64 * 1024
_TEXT = 256
COOKIE = "indelible_session"
SECURE_COOKIE = "__Host-indelible_session"  # the __Host- prefix: Secure, Path=/, no Domain
LOGIN_COOKIE = "indelible_login"


def security_headers(response: Response) -> Response:
    for name, value in _HEADERS.items():
        response.headers[name] = value
    return response


@dataclass
class UiState:
    """The UI's parts, built once per application."""

    runtime: Runtime
    sessions: SessionKeys
    hourly: HourlyCounts
    templates: Environment = field(default_factory=lambda: environment())


def environment() -> Environment:
    """The templates, every value escaped: audit data is attacker-controlled."""
    env = Environment(
        loader=PackageLoader("indelible.server.ui", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["json"] = _json_text
    env.filters["path"] = lambda part: quote(str(part), safe="")
    return env


def _json_text(value: Any) -> str:
    """A value as indented JSON text (escaped by the template like any other text)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False)


def ui_state(request: Request) -> UiState:
    state = request.app.state.ui
    assert isinstance(state, UiState)
    return state


class LoginRequired(Exception):
    """No valid session: the browser is sent to the login page."""


@dataclass
class Page:
    """One request to a page: who asks, the form (POST), and how to answer."""

    request: Request
    ui: UiState
    principal: Principal
    session: Session
    form: dict[str, str]

    @property
    def runtime(self) -> Runtime:
        return self.ui.runtime

    @property
    def log_id(self) -> int:
        return self.principal.log_id

    @property
    def csrf(self) -> str:
        return self.ui.sessions.csrf(self.session.nonce)

    def param(self, name: str, limit: int = _TEXT) -> str | None:
        """A query (GET) or form (POST) value; blank is None; too long is a 400."""
        source = self.form if self.request.method == "POST" else self.request.query_params
        value = source.get(name)
        if value is None or not value.strip():
            return None
        value = value.strip()
        if len(value) > limit:
            raise InputError(f"{name} is longer than {limit} characters")
        return value

    def reason(self) -> str | None:
        reason = self.param("reason", self.runtime.limits.max_reason_chars)
        if reason is not None and not reason.isprintable():
            raise InputError("the reason must be printable text")
        return reason

    def reader(self) -> RequestInfo:
        """The reader's request info for ``audit.read``, once the tenant's reason rule is
        met (the reason is the form's ``reason`` field, as the API's ``X-Audit-Reason``)."""
        reason = self.reason()
        if not reason and self.runtime.tenant_settings(self.log_id)["require_read_reason"]:
            raise ReasonRequired("this tenant requires a reason on every read")
        return self.info(reason)

    def info(self, reason: str | None = None) -> RequestInfo:
        return RequestInfo(
            ip=client_address(self.request),
            user_agent=user_agent(self.request),
            reason=reason,
            source="ui",
        )

    def allows(self, permission: Permission) -> bool:
        return self.principal.allows(permission)

    async def require(self, permission: Permission) -> None:
        if not self.principal.allows(permission):
            await deny(self.request, self.principal, permission, source="ui")

    def link(self, path: str, **params: Any) -> str:
        """``path`` with ``params`` (None left out) and the reader's reason carried along."""
        given = {name: value for name, value in params.items() if value is not None}
        reason = self.reason()
        if reason and "reason" not in given:
            given["reason"] = reason
        return f"{path}?{urlencode(given)}" if given else path

    def render(self, template: str, status_code: int = 200, **context: Any) -> Response:
        return render(self.ui, template, status_code, page=self, **context)


def render(ui: UiState, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    page: Page | None = context.pop("page", None)
    body = ui.templates.get_template(template).render(
        page=page,
        principal=page.principal if page else None,
        can={p.value: page.allows(p) for p in Permission} if page else {},
        csrf=page.csrf if page else "",
        **context,
    )
    response = HTMLResponse(body, status_code=status_code)
    response.headers["Cache-Control"] = "no-store"
    return response


def cookie_secure(request: Request, ui: UiState) -> bool:
    mode = ui.runtime.ui.secure_cookie
    return mode == "true" or (mode == "auto" and request.url.scheme == "https")


def session_token(request: Request) -> str | None:
    return request.cookies.get(SECURE_COOKIE) or request.cookies.get(COOKIE)


def find_session(request: Request, ui: UiState) -> tuple[Principal, Session] | None:
    """The valid session of the request's cookie and its principal, else None."""
    token = session_token(request)
    if token is None:
        return None
    claimed = ui.sessions.peek(token)
    if claimed is None:
        return None
    keys = ui.runtime.keys
    try:
        row = keys.active(claimed.key_id)
        session = ui.sessions.check(token, row.secret_hash, ui.runtime.clock_ms())
        if session is None:
            return None
        return keys.principal_of(row), session
    except Unauthenticated:
        return None


async def read_form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body (the only kind the UI's forms send)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise InputError("forms are sent as application/x-www-form-urlencoded")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise LimitExceeded(
                f"a form is at most {MAX_FORM_BYTES} bytes",
                limit="form_bytes",
                maximum=MAX_FORM_BYTES,
            )
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        raise InputError("the form is not UTF-8 URL-encoded text") from None
    return dict(pairs)


Handler = Callable[..., Awaitable[Response]]


def page(permission: Permission) -> Callable[[Handler], Handler]:
    """A UI route: session, role, CSRF (on POST), error pages, headers (module docstring).

    The handler takes a :class:`Page` first, then its path parameters (plain ``str``).
    """

    def decorate(handler: Handler) -> Handler:
        async def route(request: Request, **params: Any) -> Response:
            started = time.perf_counter()
            ui = ui_state(request)
            try:
                response = await _serve(request, ui, permission, handler, params)
            except LoginRequired:
                target = request.url.path
                if request.method == "GET" and request.url.query:
                    target += "?" + request.url.query
                response = RedirectResponse("/login?" + urlencode({"next": target}), 303)
            response.headers["Server-Timing"] = (
                f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
            )
            return security_headers(response)

        signature = inspect.signature(handler)
        parameters = list(signature.parameters.values())[1:]
        first = inspect.Parameter(
            "request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request
        )
        route.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=[first, *(p.replace(annotation=str) for p in parameters)],
            return_annotation=Response,
        )
        route.__name__ = handler.__name__
        route.__doc__ = handler.__doc__
        return route

    return decorate


async def _serve(
    request: Request,
    ui: UiState,
    permission: Permission,
    handler: Handler,
    params: dict[str, Any],
) -> Response:
    found = find_session(request, ui)
    if found is None:
        raise LoginRequired
    principal, session = found
    current = Page(request, ui, principal, session, {})
    try:
        if request.method == "POST":
            current.form = await read_form(request)
            if not ui.sessions.csrf_ok(session.nonce, current.form.get("csrf")):
                raise Forbidden("the form's CSRF token is missing or wrong: reload the page")
        await current.require(permission)
        return await handler(current, **params)
    except IndelibleError as exc:
        return error_page(ui, exc, current)


def error_page(ui: UiState, exc: IndelibleError, current: Page | None = None) -> Response:
    status = status_for(exc)
    asked: list[tuple[str, str]] = []
    if isinstance(exc, ReasonRequired) and current is not None:
        asked = [(k, v) for k, v in current.request.query_params.multi_items() if k != "reason"]
    if current is not None:
        response: Response = current.render(
            "error.html", status, error=exc, status=status, asked=asked
        )
    else:
        response = render(ui, "error.html", status, error=exc, status=status, asked=asked)
    if isinstance(exc, RetryLater):
        response.headers["Retry-After"] = str(max(1, int(exc.retry_after + 0.999)))
    return response


async def not_found_page(request: Request, message: str, status: int = 404) -> Response:
    """An unknown UI path, for a browser: the error page, signed in or not."""
    ui = ui_state(request)
    found = find_session(request, ui)
    error: IndelibleError = NotFound(message) if status == 404 else MethodNotAllowed(message)
    if found is None:
        response: Response = render(ui, "error.html", status, error=error, status=status, asked=[])
    else:
        current = Page(request, ui, found[0], found[1], {})
        response = current.render("error.html", status, error=error, status=status, asked=[])
    return security_headers(response)
