"""The web UI: server-rendered pages over the same service calls as the JSON API.

:func:`install` adds its routes at ``/`` (the API keeps ``/v1``, ``/tlog``, ``/metrics``,
``/healthz``, ``/readyz``). Pages are Jinja2 templates with autoescaping, one hand-written
stylesheet and one small script; docs/ui.md describes every page and setting.
"""

from __future__ import annotations

import inspect

from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException
from starlette.responses import Response

from indelible.server.runtime import Runtime
from indelible.server.ui import login, manage, pages
from indelible.server.ui.session import SessionKeys
from indelible.server.ui.web import UiState, not_found_page
from indelible.service.activity import HourlyCounts

__all__ = ["API_PREFIXES", "install"]

# Paths of the JSON API and the tlog: their errors keep the JSON shape, whoever asks.
API_PREFIXES = ("/v1/", "/tlog/", "/metrics", "/healthz", "/readyz", "/openapi.json")


def _wants_html(request: Request) -> bool:
    path = request.url.path
    if path.startswith(API_PREFIXES) or path == "/v1":
        return False
    return "text/html" in request.headers.get("accept", "")


def install(app: FastAPI, runtime: Runtime) -> None:
    """Serve the UI from ``app``: its routes, its state, HTML 404/405 pages for browsers."""
    app.state.ui = UiState(runtime, SessionKeys(runtime.keys_dir), HourlyCounts(runtime.store))
    for router in (login.router, pages.router, manage.router):
        app.include_router(router)
    json_handler = app.exception_handlers[HTTPException]

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code in (404, 405) and _wants_html(request):
            where = f"{request.method} {request.url.path}"
            message = f"no page at {where}" if exc.status_code == 404 else f"not allowed: {where}"
            return await not_found_page(request, message, exc.status_code)
        response = json_handler(request, exc)
        assert inspect.isawaitable(response)
        answered = await response
        assert isinstance(answered, Response)
        return answered

    app.add_exception_handler(HTTPException, on_http)
