"""Every error response of the HTTP service: one status table, one JSON shape.

Each error is answered as ``{"error": {"code", "message", "details"}}`` (the shape of
:meth:`~indelible.errors.IndelibleError.to_dict`), whether Indelible raised it, the router
did (unknown route, wrong method), or the code failed unexpectedly (500, details hidden).
"""

from __future__ import annotations

import math
import re
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import compile_path

from indelible.errors import (
    AlreadyExists,
    ConfigError,
    Conflict,
    DuplicateEventId,
    Forbidden,
    FormatError,
    IndelibleError,
    InputError,
    InvalidEvent,
    LastAdminKey,
    LimitExceeded,
    MalformedJSON,
    MethodNotAllowed,
    NotFound,
    NotRepresentable,
    Overloaded,
    RateLimited,
    ReasonRequired,
    RetryLater,
    StoreError,
    Unauthenticated,
    UnsupportedMediaType,
    UpstreamError,
    VerificationError,
)

__all__ = ["STATUS", "error_response", "install_error_handlers", "internal_error", "status_for"]

# The exception → status table; the first class an error is an instance of wins.
STATUS: tuple[tuple[type[IndelibleError], int], ...] = (
    (MalformedJSON, 400),
    (FormatError, 400),
    (MethodNotAllowed, 405),
    (LimitExceeded, 413),
    (UnsupportedMediaType, 415),
    (InvalidEvent, 422),
    (ReasonRequired, 400),
    (AlreadyExists, 409),
    (LastAdminKey, 409),
    (NotRepresentable, 422),
    (InputError, 400),
    (Unauthenticated, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (Conflict, 409),
    (DuplicateEventId, 409),
    (Overloaded, 503),  # with Retry-After
    (RateLimited, 429),  # with Retry-After
    (StoreError, 503),  # the write was not acknowledged; StoreLocked included
    (UpstreamError, 502),
    (VerificationError, 500),  # the server's own data failed to verify
    (ConfigError, 500),
    (IndelibleError, 500),
)


class _HTTPError(IndelibleError):
    """An error of the HTTP layer itself, with no class of its own in the tree."""

    def __init__(
        self, status: int, message: str, code: str = "", details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.code, self.status = code or f"http_{status}", status
        self._details = details or {}

    def details(self) -> dict[str, Any]:
        return self._details


def status_for(exc: IndelibleError) -> int:
    if isinstance(exc, _HTTPError):
        return exc.status
    for kind, status in STATUS:
        if isinstance(exc, kind):
            return status
    return 500


def error_response(exc: IndelibleError, headers: dict[str, str] | None = None) -> Response:
    headers = dict(headers or {})
    if isinstance(exc, Unauthenticated):
        headers["WWW-Authenticate"] = 'Bearer realm="indelible"'
    if isinstance(exc, RetryLater):
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    return Response(
        orjson.dumps(exc.to_dict()),
        status_code=status_for(exc),
        media_type="application/json",
        headers=headers,
    )


def _from_http(request: Request, exc: HTTPException) -> IndelibleError:
    where = f"{request.method} {request.url.path}"
    if exc.status_code == 404:
        return NotFound(f"no route for {where}")
    if exc.status_code == 405:
        return MethodNotAllowed(f"method not allowed: {where}")
    return _HTTPError(exc.status_code, str(exc.detail))


async def _on_indelible(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, IndelibleError)
    return error_response(exc)


async def _on_http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    error = _from_http(request, exc)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = allowed_methods(request.app, request.url.path) or headers["Allow"]
    return error_response(error, headers)


def allowed_methods(app: Any, path: str) -> str:
    """Every method the app answers on ``path`` (the router names only the first route whose
    path matched), from the OpenAPI description of its routes."""
    table: list[tuple[re.Pattern[str], str]] | None = getattr(app.state, "allow_table", None)
    if table is None:
        table = []
        for template, operations in app.openapi()["paths"].items():
            methods = {method.upper() for method in operations}
            table.append((compile_path(template)[0], ", ".join(sorted(methods))))
        app.state.allow_table = table
    return ", ".join(allow for regex, allow in table if regex.match(path))


async def _on_request_validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    problems: list[dict[str, Any]] = [
        {
            "field": "/" + "/".join(str(part) for part in problem.get("loc", ())),
            "rule": str(problem.get("type", "invalid")),
            "message": str(problem.get("msg", "invalid")),
        }
        for problem in exc.errors()
    ]
    return error_response(
        _HTTPError(422, "the request is invalid", "invalid_request", {"errors": problems})
    )


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    # The traceback goes to the server log (the ASGI server logs the re-raised error);
    # the client learns nothing about the internals.
    return internal_error()


def internal_error() -> Response:
    return error_response(_HTTPError(500, "internal server error", "internal_error"))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(IndelibleError, _on_indelible)
    app.add_exception_handler(HTTPException, _on_http)
    app.add_exception_handler(RequestValidationError, _on_request_validation)
    app.add_exception_handler(Exception, _on_unexpected)
