"""``POST /v1/events`` without the framework's routing layers: the hottest route, served by
the same code (``auth.admit``, ``api.ingest``, ``errors.error_response``) as through FastAPI.

Under 64 concurrent single-event clients the event loop was the bottleneck and most of its
time went to routing, dependency resolution and per-route middleware, not to ingest. This
middleware answers exactly ``POST /v1/events`` itself and hands every other request on; the
route stays declared in the application (and its OpenAPI) and behaves identically.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from indelible.errors import IndelibleError
from indelible.server.api import ingest
from indelible.server.auth import admit, bearer_token
from indelible.server.errors import error_response, internal_error
from indelible.service.access import Permission

__all__ = ["IngestFastPath"]

log = logging.getLogger("indelible.server")
_ROUTE = SimpleNamespace(path="/v1/events")


class IngestFastPath:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/v1/events" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        scope["route"] = _ROUTE  # what the metrics label the request with
        request = Request(scope, receive)
        try:
            principal = await admit(request, bearer_token(request), Permission.INGEST)
            response = await ingest(request, principal)
        except IndelibleError as exc:
            response = error_response(exc)
        except Exception:
            log.exception("POST /v1/events failed unexpectedly")
            response = internal_error()
        await response(scope, receive, send)
