"""The JSON API, version 1: ingest, and the log's checkpoint and verification key."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import PlainTextResponse, Response

from indelible.core.event import Event, parse_batch, validate_batch
from indelible.errors import InputError, NotFound
from indelible.server.body import is_ndjson, read_limited
from indelible.server.runtime import IngestLimits, Runtime

__all__ = ["json_response", "router", "runtime_of"]

router = APIRouter()


def runtime_of(request: Request) -> Runtime:
    runtime = request.app.state.runtime
    assert isinstance(runtime, Runtime)
    return runtime


def json_response(document: Any, status_code: int = 200) -> Response:
    return Response(orjson.dumps(document), status_code=status_code, media_type="application/json")


def parse_events(raw: bytes, *, ndjson: bool, now_ms: int, limits: IngestLimits) -> list[Event]:
    """Strict parse, then validation of every item (one InvalidEvent listing all failures)."""
    items = parse_batch(
        raw, max_bytes=limits.max_body_bytes, max_items=limits.max_events, ndjson=ndjson
    )
    if not items:
        raise InputError("the request holds no events")
    return validate_batch(items, now_ms=now_ms, limits=limits.event)


@router.post("/v1/events", status_code=201)
async def post_events(request: Request) -> Response:
    """Append events; answer with their receipts once they are durable."""
    runtime = runtime_of(request)
    ndjson = is_ndjson(request.headers.get("content-type"))
    raw = await read_limited(request, runtime.limits.max_body_bytes)
    # Parsing and validating a large batch takes milliseconds: keep it off the event loop.
    events = await run_in_threadpool(
        parse_events, raw, ndjson=ndjson, now_ms=runtime.clock_ms(), limits=runtime.limits
    )
    future = runtime.sequencer.submit(events)
    # Shielded: a client that goes away must not cancel a request the sequencer holds.
    receipts = await asyncio.shield(asyncio.wrap_future(future))
    return json_response({"receipts": [receipt.to_dict() for receipt in receipts]}, 201)


@router.get("/v1/checkpoint")
async def get_checkpoint(request: Request) -> Response:
    """The latest signed checkpoint (a C2SP signed note)."""
    row = await run_in_threadpool(runtime_of(request).latest_checkpoint)
    if row is None:
        raise NotFound("no checkpoint yet: the log is empty")
    return PlainTextResponse(row.note, headers={"Cache-Control": "no-cache"})


@router.get("/v1/vkey")
async def get_vkey(request: Request) -> Response:
    """The log's verification key (C2SP vkey), one line."""
    return PlainTextResponse(runtime_of(request).opened.info.vkey + "\n")


@router.get("/healthz")
async def healthz() -> Response:
    """Liveness: the process answers."""
    return json_response({"status": "ok"})


@router.get("/readyz")
async def readyz(request: Request) -> Response:
    """Readiness: the sequencer runs and the last checkpoint signing succeeded."""
    reason = runtime_of(request).not_ready()
    if reason is not None:
        return json_response({"status": "unavailable", "reason": reason}, 503)
    return json_response({"status": "ok"})
