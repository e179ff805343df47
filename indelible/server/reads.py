"""Reading audit data: query, get, entity history and state at T, export, verification.

Every read of audit data is itself audited: before the answer leaves, an ``audit.read`` event
(who, which route and filter, how many results, the ``X-Audit-Reason``) is durably appended to
the tenant's log. If it cannot be written the read fails (503) and nothing is returned. A
tenant may require a reason on every read (``require_read_reason``): a read without
``X-Audit-Reason`` is then refused (400) before anything is looked up.

Query parameters are checked by name: an unknown one is refused (400) instead of being
ignored, so a misspelt filter never silently widens a forensic query.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from functools import partial
from typing import Annotated, Any, Literal, TypeVar

import orjson
from fastapi import APIRouter, Depends, Path, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response, StreamingResponse

from indelible.core.entry import decode
from indelible.core.tabular import csv_header, csv_line, csv_row
from indelible.core.timestamps import parse_timestamp
from indelible.errors import InputError, LimitExceeded, NotFound, ReasonRequired
from indelible.server.api import json_response
from indelible.server.auth import authorized, request_info, runtime_of
from indelible.server.docs import errors
from indelible.server.runtime import Runtime
from indelible.service import query
from indelible.service.access import Permission, Principal
from indelible.service.audit import RequestInfo
from indelible.service.logs import open_log
from indelible.service.verification import verify_and_record
from indelible.storage.base import EntryRow

__all__ = ["audited_read", "parse_time", "refuse_unknown", "router", "verify_tenant"]

router = APIRouter()
T = TypeVar("T")

_TEXT = 256  # longest value of a text filter
_ID = 256  # longest entity type or id in a path

FILTER_PARAMS = frozenset(
    {
        "actor_id",
        "actor_type",
        "target_type",
        "target_id",
        "event_type",
        "action",
        "outcome",
        "request_id",
        "ip",
        "occurred_from",
        "occurred_to",
        "received_from",
        "received_to",
    }
)
PAGE_PARAMS = frozenset({"order", "limit", "cursor"})


def refuse_unknown(request: Request, allowed: frozenset[str]) -> None:
    """Refuse a parameter the route does not take, or one given twice (which of the two
    would filter is a guess no forensic query should rest on)."""
    counts = Counter(name for name, _ in request.query_params.multi_items())
    unknown = sorted(set(counts) - allowed)
    if unknown:
        raise InputError(
            f"unknown query parameter {unknown[0]!r}; this route takes: "
            + ", ".join(sorted(allowed))
        )
    repeated = sorted(name for name, count in counts.items() if count > 1)
    if repeated:
        raise InputError(f"query parameter {repeated[0]!r} is given more than once")


def parse_time(name: str, text: str | None) -> int | None:
    """An optional RFC 3339 UTC time parameter as epoch ms (``InputError`` naming it)."""
    if text is None:
        return None
    try:
        return parse_timestamp(text)
    except ValueError as exc:
        raise InputError(f"{name}: {text!r} is not an RFC 3339 UTC timestamp: {exc}") from None


Text = Annotated[str | None, Query(max_length=_TEXT)]
_RFC3339_UTC = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,3})?(Z|\+00:00)$"
Time = Annotated[
    str | None,
    Query(
        max_length=40,
        pattern=_RFC3339_UTC,
        description="RFC 3339 UTC, e.g. 2026-12-01T00:00:00Z",
    ),
]


def event_filter(
    actor_id: Text = None,
    actor_type: Text = None,
    target_type: Text = None,
    target_id: Text = None,
    event_type: Annotated[
        str | None, Query(max_length=_TEXT, description="Exact, or a prefix: invoice.*")
    ] = None,
    action: Text = None,
    outcome: Text = None,
    request_id: Text = None,
    ip: Text = None,
    occurred_from: Time = None,
    occurred_to: Time = None,
    received_from: Time = None,
    received_to: Time = None,
) -> query.EventFilter:
    """The filter of ``GET /v1/events`` and its export; time ranges are ``[from, to)``."""
    selection = query.EventFilter(
        actor_id=actor_id,
        actor_type=actor_type,
        target_type=target_type,
        target_id=target_id,
        event_type=event_type,
        action=action,
        outcome=outcome,
        request_id=request_id,
        ip=ip,
        occurred_from_ms=parse_time("occurred_from", occurred_from),
        occurred_to_ms=parse_time("occurred_to", occurred_to),
        received_from_ms=parse_time("received_from", received_from),
        received_to_ms=parse_time("received_to", received_to),
    )
    selection.to_query()  # refuses a bad event_type or an inverted range now, as a 400
    return selection


Filter = Annotated[query.EventFilter, Depends(event_filter)]
Order = Annotated[Literal["asc", "desc"], Query(description="By seq")]
Limit = Annotated[int, Query(ge=1, le=query.MAX_PAGE)]
Cursor = Annotated[
    str | None, Query(pattern=r"^[ad][0-9]{1,16}$", description="next_cursor of a page")
]
EntityType = Annotated[str, Path(min_length=1, max_length=_ID)]
EntityId = Annotated[str, Path(min_length=1, max_length=_ID)]


def _reader(request: Request, principal: Principal) -> RequestInfo:
    """The reader's request info, once the tenant's reason rule is met."""
    runtime = runtime_of(request)
    info = request_info(request)
    if runtime.tenant_settings(principal.log_id)["require_read_reason"] and not info.reason:
        raise ReasonRequired("this tenant requires an X-Audit-Reason header on every read")
    return info


async def _audit_read(
    runtime: Runtime,
    principal: Principal,
    info: RequestInfo,
    route: str,
    about: dict[str, Any],
    results: int,
    outcome: str = "success",
) -> None:
    await runtime.record(
        principal.log_id,
        "audit.read",
        actor=principal.actor(),
        action="read",
        outcome=outcome,
        request=info,
        data={"route": route, **about, "results": results},
    )


async def audited_read(
    request: Request,
    principal: Principal,
    route: str,
    about: dict[str, Any],
    compute: Callable[[], T],
    count: Callable[[T], int],
    info: RequestInfo | None = None,
) -> T:
    """Run a read, then write its ``audit.read``; only then may the answer leave.

    ``info`` is the reader's request info when the caller has it already (the web UI, whose
    reason comes from a form and is checked against the tenant's rule by the caller)."""
    runtime = runtime_of(request)
    if info is None:
        info = _reader(request, principal)
    try:
        result = await run_in_threadpool(compute)
    except NotFound:
        await _audit_read(runtime, principal, info, route, about, 0, "failure")
        raise
    await _audit_read(runtime, principal, info, route, about, count(result))
    return result


async def _audited_page(
    request: Request,
    principal: Principal,
    route: str,
    what: dict[str, Any],
    fetch: Callable[..., query.Page],
    order: str,
    limit: int,
    cursor: str | None,
) -> Response:
    """One keyset page of ``fetch``, read and audited (``what`` names what was asked for)."""
    about: dict[str, Any] = {**what, "order": order, "limit": limit}
    if cursor is not None:
        about["cursor"] = cursor
    page = await audited_read(
        request,
        principal,
        route,
        about,
        lambda: fetch(limit=limit, cursor=cursor, descending=order == "desc"),
        lambda page: len(page.items),
    )
    return json_response(page.to_dict())


READ = Annotated[Principal, Depends(authorized(Permission.READ))]
EXPORT = Annotated[Principal, Depends(authorized(Permission.EXPORT))]
VERIFY = Annotated[Principal, Depends(authorized(Permission.VERIFY))]
_READ_ERRORS = errors(400, 401, 403, 422, 429, 503)


@router.get("/v1/events", responses=_READ_ERRORS, tags=["query"])
async def list_events(
    request: Request,
    principal: READ,
    selection: Filter,
    order: Order = "asc",
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Response:
    """Events matching every given filter, one keyset page at a time."""
    refuse_unknown(request, FILTER_PARAMS | PAGE_PARAMS)
    fetch = partial(query.query_events, runtime_of(request).store, principal.log_id, selection)
    about = {"filter": selection.to_dict()}
    return await _audited_page(request, principal, "events", about, fetch, order, limit, cursor)


@router.get(
    "/v1/events/export",
    responses={
        200: {"content": {"text/csv": {}, "application/x-ndjson": {}}},
        **errors(400, 401, 403, 413, 422, 429, 503),
    },
    response_class=StreamingResponse,
    tags=["query"],
)
async def export_events(
    request: Request,
    principal: EXPORT,
    selection: Filter,
    format: Annotated[Literal["csv", "ndjson"], Query()] = "ndjson",
) -> Response:
    """Every matching event, streamed in seq order as CSV or NDJSON.

    The export covers the log as it stood when the request arrived; its size is counted
    first (``X-Export-Count``) and refused (413) past ``max_export_events``.
    """
    refuse_unknown(request, FILTER_PARAMS | {"format"})
    runtime = runtime_of(request)
    store, log_id = runtime.store, principal.log_id
    limit = runtime.limits.max_export_events
    entry_query = selection.to_query()

    def count() -> tuple[int, int]:
        max_seq = store.tree_size(log_id) - 1
        return max_seq, store.count_entries(log_id, replace(entry_query, max_seq=max_seq))

    info = _reader(request, principal)
    max_seq, total = await run_in_threadpool(count)
    if total > limit:
        raise LimitExceeded(
            f"the export holds {total} events; the limit is {limit}: narrow the filter",
            limit="max_export_events",
            maximum=limit,
            actual=total,
        )
    about = {"filter": selection.to_dict(), "format": format, "up_to_seq": max_seq}
    await _audit_read(runtime, principal, info, "export", about, total)
    rows = query.export_rows(store, log_id, selection, max_seq)
    body = _csv(rows) if format == "csv" else _ndjson(rows)
    media = "text/csv; charset=utf-8" if format == "csv" else "application/x-ndjson"
    return StreamingResponse(
        body,
        media_type=media,
        headers={
            "X-Export-Count": str(total),
            "Content-Disposition": f'attachment; filename="{principal.log_name}-events.{format}"',
        },
    )


def _csv(rows: Iterator[EntryRow]) -> Iterator[bytes]:
    yield csv_header().encode()
    chunk: list[str] = []
    for row in rows:
        decoded = decode(row.leaf, row.personal)
        chunk.append(
            csv_line(csv_row(row.seq, decoded.received_at, row.leaf_hash.hex(), decoded.event))
        )
        if len(chunk) >= 500:
            yield "".join(chunk).encode()
            chunk = []
    if chunk:
        yield "".join(chunk).encode()


def _ndjson(rows: Iterator[EntryRow]) -> Iterator[bytes]:
    chunk: list[bytes] = []
    for row in rows:
        chunk.append(orjson.dumps(query.entry_view(row)) + b"\n")
        if len(chunk) >= 500:
            yield b"".join(chunk)
            chunk = []
    if chunk:
        yield b"".join(chunk)


@router.get("/v1/events/{event_id}", responses=errors(400, 401, 403, 404, 429, 503), tags=["query"])
async def get_event(
    request: Request,
    principal: READ,
    event_id: Annotated[str, Path(min_length=1, max_length=128)],
) -> Response:
    """One event by its event_id."""
    refuse_unknown(request, frozenset())
    store = runtime_of(request).store
    entry = await audited_read(
        request,
        principal,
        "event",
        {"event_id": event_id},
        lambda: query.get_event(store, principal.log_id, event_id),
        lambda entry: 1,
    )
    return json_response(entry)


@router.get(
    "/v1/entities/{entity_type}/{entity_id}/history", responses=_READ_ERRORS, tags=["query"]
)
async def entity_history(
    request: Request,
    principal: READ,
    entity_type: EntityType,
    entity_id: EntityId,
    order: Order = "asc",
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Response:
    """Every event whose target, or one of whose related records, is this record."""
    refuse_unknown(request, PAGE_PARAMS)
    store = runtime_of(request).store
    fetch = partial(query.entity_history, store, principal.log_id, entity_type, entity_id)
    about = {"entity": {"type": entity_type, "id": entity_id}}
    return await _audited_page(request, principal, "history", about, fetch, order, limit, cursor)


@router.get(
    "/v1/entities/{entity_type}/{entity_id}/state",
    responses=errors(400, 401, 403, 413, 422, 429, 503),
    tags=["query"],
)
async def entity_state(
    request: Request,
    principal: READ,
    entity_type: EntityType,
    entity_id: EntityId,
    at: Annotated[
        str | None,
        Query(max_length=40, pattern=_RFC3339_UTC, description="RFC 3339 UTC; default now"),
    ] = None,
) -> Response:
    """The record's state at ``at``, replayed from before/after changes, with the seqs used
    and every gap found."""
    refuse_unknown(request, frozenset({"at"}))
    runtime = runtime_of(request)
    at_ms = parse_time("at", at)
    if at_ms is None:
        at_ms = runtime.clock_ms()
    report = await audited_read(
        request,
        principal,
        "state",
        {"entity": {"type": entity_type, "id": entity_id}, "at": at or "now"},
        lambda: query.entity_state(
            runtime.store,
            principal.log_id,
            entity_type,
            entity_id,
            at_ms,
            max_events=runtime.limits.max_state_events,
            cache=runtime.steps,
        ),
        lambda report: report.events,
    )
    return json_response(report.to_dict())


@router.post("/v1/verify", responses=errors(401, 403, 429, 503), tags=["evidence"])
async def verify(request: Request, principal: VERIFY) -> Response:
    """Recompute the tenant's whole log from its stored bytes: leaves, chain, tiles, every
    checkpoint's signature and consistency. ``ok`` is false, with the error, when it fails."""
    refuse_unknown(request, frozenset())
    runtime = runtime_of(request)

    async with runtime.verify_lock:  # one verification at a time: each reads the whole log
        result = await run_in_threadpool(verify_tenant, runtime, principal)
    return json_response(result)


def verify_tenant(runtime: Runtime, principal: Principal) -> dict[str, Any]:
    """Verify the principal's whole log and record the result as its last verification
    (``service.verification``); ``POST /v1/verify`` and the web UI both run this."""
    info = runtime.log_info(principal.log_id)
    opened = open_log(runtime.store, None, info.name)
    result = verify_and_record(
        runtime.store, info, opened.verifier, by=principal.key_id, clock_ms=runtime.clock_ms
    )
    if not result["ok"] and runtime.alerts is not None:  # the integrity alert verification_failed
        runtime.alerts.verification_failed(principal.log_id, result["error"])
    return result
