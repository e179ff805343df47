"""The JSON API, version 1: ingest, the tenant's checkpoint and verification key, health.

Every ``/v1`` route authenticates (``server.auth``); the tenant is always the API key's own.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import PlainTextResponse, Response

from indelible.core.event import Event, parse_batch, validate_batch
from indelible.errors import FieldError, InputError, InvalidEvent, NotFound
from indelible.server.auth import authorized, runtime_of
from indelible.server.body import is_ndjson, read_limited
from indelible.server.docs import EVENTS_BODY, errors
from indelible.server.runtime import ServerLimits
from indelible.service.access import Permission, Principal
from indelible.service.audit import RESERVED_PREFIXES

__all__ = ["ingest", "json_response", "parse_events", "router"]

router = APIRouter()

# Bodies up to this size are parsed on the event loop: handing them to a thread costs more
# than parsing them (a single event is a few hundred bytes).
INLINE_PARSE_BYTES = 64 * 1024


def json_response(document: Any, status_code: int = 200) -> Response:
    return Response(orjson.dumps(document), status_code=status_code, media_type="application/json")


def parse_events(raw: bytes, *, ndjson: bool, now_ms: int, limits: ServerLimits) -> list[Event]:
    """Strict parse, then validation of every item (one InvalidEvent listing all failures).

    Clients may not write in the ``audit.`` and ``alert.`` namespaces: those events are
    Indelible's own.
    """
    items = parse_batch(
        raw, max_bytes=limits.max_body_bytes, max_items=limits.max_events, ndjson=ndjson
    )
    if not items:
        raise InputError("the request holds no events")
    events = validate_batch(items, now_ms=now_ms, limits=limits.event)
    reserved = [
        FieldError(
            "/event_type",
            "reserved",
            f"event types starting {prefix!r} are written by Indelible itself",
            index,
        )
        for index, event in enumerate(events)
        for prefix in RESERVED_PREFIXES
        if str(event.body.get("event_type", "")).startswith(prefix)
    ]
    if reserved:
        raise InvalidEvent(reserved)
    return events


@router.post(
    "/v1/events",
    status_code=201,
    openapi_extra=EVENTS_BODY,
    responses=errors(400, 401, 403, 409, 413, 415, 422, 429, 503),
    tags=["ingest"],
)
async def post_events(
    request: Request, principal: Annotated[Principal, Depends(authorized(Permission.INGEST))]
) -> Response:
    """Append events (one, an array, or NDJSON); all or nothing. Answers with their receipts
    once they are durable."""
    return await ingest(request, principal)


async def ingest(request: Request, principal: Principal) -> Response:
    """``POST /v1/events`` once admitted: the route, and the fast path (``server.fastpath``)."""
    runtime = runtime_of(request)
    ndjson = is_ndjson(request.headers.get("content-type"))
    limits = runtime.limits
    raw = await read_limited(request, limits.max_body_bytes)
    now = runtime.clock_ms()
    if len(raw) <= INLINE_PARSE_BYTES:
        events = parse_events(raw, ndjson=ndjson, now_ms=now, limits=limits)
    else:
        events = await run_in_threadpool(
            parse_events, raw, ndjson=ndjson, now_ms=now, limits=limits
        )
    receipts = await runtime.submit(principal.log_id, events)
    request.state.ingested = len(events)
    return json_response({"receipts": [receipt.to_dict() for receipt in receipts]}, 201)


@router.get(
    "/v1/checkpoint",
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
        **errors(401, 403, 404, 429),
    },
    response_class=PlainTextResponse,
    tags=["evidence"],
)
async def get_checkpoint(
    request: Request, principal: Annotated[Principal, Depends(authorized(Permission.EVIDENCE))]
) -> Response:
    """The tenant's newest final checkpoint (a C2SP signed note, cosignatures appended)."""
    served = runtime_of(request).hub.get(principal.log_id)
    final = await run_in_threadpool(served.final_checkpoint)
    if final is None:
        raise NotFound("no final checkpoint yet: the log is empty or not yet cosigned")
    return PlainTextResponse(final.note, headers={"Cache-Control": "no-cache"})


@router.get(
    "/v1/vkey",
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
        **errors(401, 403, 429),
    },
    response_class=PlainTextResponse,
    tags=["evidence"],
)
async def get_vkey(
    request: Request, principal: Annotated[Principal, Depends(authorized(Permission.EVIDENCE))]
) -> Response:
    """The tenant log's verification key (C2SP vkey), one line."""
    return PlainTextResponse(runtime_of(request).log_info(principal.log_id).vkey + "\n")


@router.get("/healthz", tags=["operations"])
async def healthz() -> Response:
    """Liveness: the process answers."""
    return json_response({"status": "ok"})


_READINESS = {
    "type": "object",
    "required": ["status"],
    "properties": {"status": {"type": "string"}, "reason": {"type": "string"}},
}


@router.get(
    "/readyz",
    responses={
        200: {"content": {"application/json": {"schema": _READINESS}}},
        503: {
            "description": "Not ready: the reason says which log and why",
            "content": {"application/json": {"schema": _READINESS}},
        },
    },
    tags=["operations"],
)
async def readyz(request: Request) -> Response:
    """Readiness: every sequencer runs and every log's last checkpoint signing succeeded."""
    reason = runtime_of(request).not_ready()
    if reason is not None:
        return json_response({"status": "unavailable", "reason": reason}, 503)
    return json_response({"status": "ok"})
