"""The witness's HTTP edge: C2SP tlog-witness ``POST /add-checkpoint`` as a Starlette app.

Answers, as c2sp.org/tlog-witness requires:

- 200 ``text/plain; charset=utf-8``: the cosignature line(s);
- 409 ``text/x.tlog.size``: the old size is not the witness's size, which is the body;
- 409 (JSON): a checkpoint of the held size with another root (a split view);
- 404 unknown origin, 403 no trusted signature, 422 the consistency proof fails,
  400 a malformed body or an old size larger than the checkpoint's; 413 a body over the
  limit (the spec names no status for that).

Every answer but 200 and the size 409 uses the service's one JSON error shape
(:func:`indelible.server.errors.error_response`), unknown routes and methods included.
"""

from __future__ import annotations

import logging

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from indelible.core.cosignature import MAX_ADD_CHECKPOINT_BYTES
from indelible.errors import IndelibleError, MethodNotAllowed, NotFound
from indelible.server.body import read_limited
from indelible.server.errors import error_response, internal_error, status_for
from indelible.service.witness import SIZE_MEDIA_TYPE, STATUS, Witness, WitnessConflict

__all__ = ["create_witness_app"]

log = logging.getLogger("indelible.witness")


def _status(exc: IndelibleError) -> int:
    for kind, status in STATUS:
        if isinstance(exc, kind):
            return status
    return status_for(exc)  # e.g. 503 when the state's commit failed


def _refused(exc: IndelibleError) -> Response:
    if isinstance(exc, WitnessConflict):
        # exactly this media type: no charset parameter (Starlette adds one to text/*)
        return Response(f"{exc.size}\n", 409, headers={"Content-Type": SIZE_MEDIA_TYPE})
    response = error_response(exc)
    response.status_code = _status(exc)
    return response


def create_witness_app(
    witness: Witness, *, max_body_bytes: int = MAX_ADD_CHECKPOINT_BYTES
) -> Starlette:
    """The ASGI app of ``witness``; ``max_body_bytes`` bounds a request body (413 above)."""

    async def add_checkpoint(request: Request) -> Response:
        try:
            body = await read_limited(request, max_body_bytes)
            # SQLite commits (fsync) block: keep them off the event loop.
            line = await run_in_threadpool(witness.add_checkpoint, body)
        except IndelibleError as exc:
            return _refused(exc)
        except Exception:
            log.exception("add-checkpoint failed")
            return internal_error()
        return PlainTextResponse(line)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        where = f"{request.method} {request.url.path}"
        if exc.status_code == 405:
            return error_response(
                MethodNotAllowed(f"method not allowed: {where}"), {"Allow": "POST"}
            )
        return error_response(NotFound(f"no route for {where}"))

    return Starlette(
        routes=[Route("/add-checkpoint", add_checkpoint, methods=["POST"])],
        exception_handlers={HTTPException: on_http},
    )
