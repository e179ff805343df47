"""docs/api.md documents every route of the real application and every error status."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from fastapi import FastAPI, routing
from fastapi.routing import APIRoute

from indelible.server import create_app
from indelible.server.errors import STATUS
from tests.server.test_api import new_runtime

ROOT = Path(__file__).resolve().parents[2]


def api_routes(app: FastAPI) -> Iterator[tuple[str, set[str]]]:
    """``(path, methods)`` of every APIRoute of ``app``, included routers' routes too.

    FastAPI 0.165 keeps an included router as one entry of ``app.routes``; its
    ``iter_route_contexts`` yields the routes inside, with their full paths. Older versions
    copy each route into ``app.routes``.
    """
    iterate = getattr(routing, "iter_route_contexts", None)
    if iterate is None:
        for route in app.routes:
            if isinstance(route, APIRoute):
                yield _template(route.path), set(route.methods or ())
        return
    for context in iterate(app.routes):
        if isinstance(context.original_route, APIRoute):
            yield _template(str(context.path)), set(context.methods or ())


def is_ui(app: FastAPI, path: str, methods: set[str]) -> bool:
    """Whether the route is the web UI's (documented in docs/ui.md, not docs/api.md)."""
    iterate = getattr(routing, "iter_route_contexts", None)
    if iterate is None:
        found = [(_template(r.path), set(r.methods or ()), r) for r in app.routes]
    else:
        found = [
            (_template(str(c.path)), set(c.methods or ()), c.original_route)
            for c in iterate(app.routes)
        ]
    return any(
        isinstance(route, APIRoute)
        and (where, how) == (path, methods)
        and str(route.endpoint.__module__).startswith("indelible.server.ui")
        for where, how, route in found
    )


def _template(path: str) -> str:
    """The path as OpenAPI and the docs write it: ``{path:path}`` is ``{path}``."""
    return re.sub(r"\{(\w+):\w+\}", r"{\1}", path)


def test_every_route_and_error_status_is_documented(tmp_path: Path) -> None:
    store, runtime, _ = new_runtime(tmp_path)
    try:
        app = create_app(runtime)
        api_doc = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
        every = list(api_routes(app))
        routes = [(path, methods) for path, methods in every if not is_ui(app, path, methods)]
        paths = {path for path, _ in routes}
        # every route of the OpenAPI document was found, and /metrics (not in it) too
        assert set(app.openapi()["paths"]) <= paths
        assert "/metrics" in paths
        missing = [
            f"{method} {path}"
            for path, methods in routes
            for method in sorted(methods - {"HEAD"})
            if f"`{method} {path}`" not in api_doc
        ]
        assert not missing, f"routes missing from docs/api.md: {missing}"
        statuses = sorted({status for _, status in STATUS})
        undocumented = [status for status in statuses if f"| {status} |" not in api_doc]
        assert not undocumented, f"error statuses missing from docs/api.md: {undocumented}"
    finally:
        store.close()


def test_every_web_ui_route_is_documented(tmp_path: Path) -> None:
    store, runtime, _ = new_runtime(tmp_path)
    try:
        app = create_app(runtime)
        ui_doc = (ROOT / "docs" / "ui.md").read_text(encoding="utf-8")
        ui = [(path, methods) for path, methods in api_routes(app) if is_ui(app, path, methods)]
        assert ("/search", {"GET"}) in ui and ("/login", {"POST"}) in ui
        missing = [
            f"{method} {path}"
            for path, methods in ui
            for method in sorted(methods - {"HEAD"})
            if f"`{method} {path}`" not in ui_doc
        ]
        assert not missing, f"web UI routes missing from docs/ui.md: {missing}"
        assert not any(path.startswith("/v1/") for path, _ in ui)
    finally:
        store.close()
