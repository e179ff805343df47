"""The web UI's pages of audit data: search, an event, a record, integrity, export.

Each page reads through the same service calls as the JSON API and writes the same
``audit.read`` (``server.reads.audited_read``; the route names are the API's, the event's
``context.source`` is ``ui``) before anything is shown. The integrity page shows checkpoints,
anchors and counts only (the API's ``evidence`` permission), like ``GET /v1/checkpoint``.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from indelible.core import merkle
from indelible.core.checkpoint import open_checkpoint
from indelible.core.timestamps import format_timestamp
from indelible.errors import IndelibleError, InputError
from indelible.server.evidence import export_recorded
from indelible.server.reads import audited_read, parse_time, verify_tenant
from indelible.server.ui.chart import hourly_chart
from indelible.server.ui.web import Page, page
from indelible.service import proofs, query
from indelible.service.access import Permission
from indelible.service.anchoring import COSIGNATURE
from indelible.service.export import ExportRequest
from indelible.service.hub import LogRuntime
from indelible.service.verification import last_verification
from indelible.storage.base import AnchorRow

__all__ = ["router"]

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50
HISTORY_SIZE = 100
STATE_EVENTS_SHOWN = 50
_MINUTES = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}$")
_SECONDS = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,3})?$")
_CURSOR = re.compile(r"^[ad][0-9]{1,16}$")
FILTERS = ("actor_id", "target_type", "target_id", "event_type", "action", "outcome")


def ui_time(current: Page, name: str) -> tuple[str | None, int | None]:
    """A time field: RFC 3339 UTC, or a browser's ``YYYY-MM-DDTHH:MM[:SS]`` read as UTC."""
    text = current.param(name, 40)
    if text is None:
        return None, None
    if _MINUTES.match(text):
        text += ":00Z"
    elif _SECONDS.match(text):
        text += "Z"
    return text, parse_time(name, text)


def _order(current: Page) -> str:
    order = current.param("order", 4) or "desc"
    if order not in ("asc", "desc"):
        raise InputError("order is asc or desc")
    return order


def _cursor(current: Page) -> str | None:
    cursor = current.param("cursor", 20)
    if cursor is not None and not _CURSOR.match(cursor):
        raise InputError("the cursor is not one this server returned")
    return cursor


@router.get("/search")
@page(Permission.READ)
async def search(current: Page) -> Response:
    """Events matching the filters and free text, newest first, one keyset page at a time."""
    given = {name: current.param(name) for name in FILTERS}
    occurred_from, from_ms = ui_time(current, "occurred_from")
    occurred_to, to_ms = ui_time(current, "occurred_to")
    selection = query.EventFilter(
        actor_id=given["actor_id"],
        target_type=given["target_type"],
        target_id=given["target_id"],
        event_type=given["event_type"],
        action=given["action"],
        outcome=given["outcome"],
        occurred_from_ms=from_ms,
        occurred_to_ms=to_ms,
    )
    selection.to_query()  # a bad event_type or an inverted range is refused now
    text, order, cursor = current.param("q"), _order(current), _cursor(current)
    info = current.reader()
    store, log_id = current.runtime.store, current.log_id
    about: dict[str, Any] = {"filter": selection.to_dict(), "order": order, "limit": PAGE_SIZE}
    if cursor is not None:
        about["cursor"] = cursor
    if text is not None:
        about["text"] = text

    def fetch() -> query.Page:
        descending = order == "desc"
        if text is not None:
            return query.search_text(
                store,
                log_id,
                selection,
                text,
                limit=PAGE_SIZE,
                cursor=cursor,
                descending=descending,
            )
        return query.query_events(
            store, log_id, selection, limit=PAGE_SIZE, cursor=cursor, descending=descending
        )

    found = await audited_read(
        current.request, current.principal, "events", about, fetch, lambda p: len(p.items), info
    )
    shown = {**given, "occurred_from": occurred_from, "occurred_to": occurred_to, "q": text}
    next_link = None
    if found.next_cursor is not None:
        next_link = current.link("/search", **shown, order=order, cursor=found.next_cursor)
    return current.render(
        "search.html",
        items=found.items,
        shown=shown,
        order=order,
        next_link=next_link,
        first_link=current.link("/search", **shown, order=order) if cursor else None,
        reason=current.reason(),
    )


def _event_about(event_id: str) -> dict[str, Any]:
    if len(event_id) > 128:
        raise InputError("an event_id is at most 128 characters")
    return {"event_id": event_id}


@router.get("/events/{event_id}")
@page(Permission.READ)
async def event_page(current: Page, event_id: str) -> Response:
    """One event: its fields, its changes as a before/after diff, its seq and leaf hash."""
    about = _event_about(event_id)
    store = current.runtime.store
    entry = await audited_read(
        current.request,
        current.principal,
        "event",
        about,
        lambda: query.get_event(store, current.log_id, event_id),
        lambda _: 1,
        current.reader(),
    )
    return current.render("event.html", entry=entry, check=None, reason=current.reason())


@dataclass(frozen=True)
class InclusionCheck:
    """The outcome of checking one entry against the newest final checkpoint."""

    status: str  # verified | pending | failed
    message: str
    steps: list[str]
    tree_size: int | None = None
    root: str | None = None
    proof_length: int | None = None


def check_inclusion(served: LogRuntime, seq: int) -> InclusionCheck:
    """Recompute the leaf hash from the stored leaf bytes, open the newest final checkpoint
    with the log's key, and verify the entry's RFC 9162 inclusion proof against its root."""
    store, info = served.opened.store, served.info
    steps: list[str] = []
    row = store.get_entry(info.log_id, seq)
    computed = merkle.leaf_hash(row.leaf)
    if computed != row.leaf_hash:
        return InclusionCheck("failed", "the stored leaf does not hash to its leaf hash", steps)
    steps.append(f"leaf hash recomputed from the {len(row.leaf)} stored leaf bytes")
    final = served.final_checkpoint()
    if final is None:
        return InclusionCheck("pending", "no final checkpoint yet: try again shortly", steps)
    try:
        checkpoint, _ = open_checkpoint(final.note, served.opened.verifier, info.origin)
    except IndelibleError as exc:
        return InclusionCheck("failed", f"the checkpoint does not verify: {exc.message}", steps)
    steps.append(f"checkpoint of size {checkpoint.size} signed by {info.origin}: signature valid")
    if seq >= checkpoint.size:
        message = f"entry {seq} is newer than the final checkpoint (size {checkpoint.size})"
        return InclusionCheck("pending", message + ": try again shortly", steps, checkpoint.size)
    proof = proofs.inclusion_proof(store, info, seq, checkpoint.size, cache=served.tiles)
    root = checkpoint.root.hex()
    try:
        merkle.verify_inclusion(computed, seq, checkpoint.size, proof.proof, checkpoint.root)
    except IndelibleError as exc:
        return InclusionCheck("failed", exc.message, steps, checkpoint.size, root, len(proof.proof))
    steps.append(f"inclusion proof of {len(proof.proof)} hashes leads to the signed root")
    message = f"entry {seq} is included in the signed tree of size {checkpoint.size}"
    return InclusionCheck("verified", message, steps, checkpoint.size, root, len(proof.proof))


@router.post("/events/{event_id}/verify")
@page(Permission.READ)
async def verify_event(current: Page, event_id: str) -> Response:
    """The event page, with its inclusion checked against the newest final checkpoint."""
    await current.require(Permission.EVIDENCE)
    about = {**_event_about(event_id), "verify": True}
    store = current.runtime.store
    served = current.runtime.hub.get(current.log_id)

    def read() -> tuple[dict[str, Any], InclusionCheck]:
        entry = query.get_event(store, current.log_id, event_id)
        return entry, check_inclusion(served, entry["seq"])

    entry, check = await audited_read(
        current.request, current.principal, "event", about, read, lambda _: 1, current.reader()
    )
    return current.render("event.html", entry=entry, check=check, reason=current.reason())


def _entity(kind: str, ref: str) -> dict[str, str]:
    if len(kind) > 256 or len(ref) > 256:
        raise InputError("an entity type or id is at most 256 characters")
    return {"type": kind, "id": ref}


@router.get("/entities/{entity_type}/{entity_id:path}")
@page(Permission.READ)
async def entity_page(current: Page, entity_type: str, entity_id: str) -> Response:
    """A record: its timeline (every event touching it) and its state at a chosen time,
    with the events that produced it and every gap found. The id may hold ``/``."""
    entity = _entity(entity_type, entity_id)
    order, cursor = _order(current), _cursor(current)
    at_text, at_ms = ui_time(current, "at")
    runtime, log_id = current.runtime, current.log_id
    store, info = runtime.store, current.reader()
    about: dict[str, Any] = {"entity": entity, "order": order, "limit": HISTORY_SIZE}
    if cursor is not None:
        about["cursor"] = cursor
    reading_history = audited_read(
        current.request,
        current.principal,
        "history",
        about,
        lambda: query.entity_history(
            store,
            log_id,
            entity_type,
            entity_id,
            limit=HISTORY_SIZE,
            cursor=cursor,
            descending=order == "desc",
        ),
        lambda p: len(p.items),
        info,
    )
    when = at_ms if at_ms is not None else runtime.clock_ms()

    def state() -> tuple[query.StateReport, list[dict[str, Any]]]:
        report = query.entity_state(
            store,
            log_id,
            entity_type,
            entity_id,
            when,
            max_events=runtime.limits.max_state_events,
            cache=runtime.steps,
        )
        shown = report.state.seqs[-STATE_EVENTS_SHOWN:]
        return report, [query.entry_view(store.get_entry(log_id, seq)) for seq in shown]

    reading_state = audited_read(
        current.request,
        current.principal,
        "state",
        {"entity": entity, "at": at_text or "now"},
        state,
        lambda found: found[0].events,
        info,
    )
    # two reads, each audited: side by side (their audit events share a group commit)
    history, (report, producers) = await asyncio.gather(reading_history, reading_state)
    base = f"/entities/{_quote(entity_type)}/{_quote(entity_id)}"
    next_link = None
    if history.next_cursor is not None:
        next_link = current.link(base, order=order, at=at_text, cursor=history.next_cursor)
    return current.render(
        "entity.html",
        entity=entity,
        base=base,
        history=history.items,
        order=order,
        next_link=next_link,
        at=at_text,
        at_label=format_timestamp(when),
        state=report.to_dict(),
        producers=list(reversed(producers)),
        reason=current.reason(),
    )


def _quote(part: str) -> str:
    from urllib.parse import quote

    return quote(part, safe="")


def _anchor(row: AnchorRow) -> dict[str, Any]:
    return {
        "size": row.size,
        "kind": "witness cosignature" if row.kind == COSIGNATURE else "RFC 3161 timestamp",
        "authority": row.authority,
        "at": format_timestamp(row.created_at_ms),
    }


def _integrity(current: Page) -> dict[str, Any]:
    runtime, log_id = current.runtime, current.log_id
    served = runtime.hub.get(log_id)
    store = runtime.store
    options = runtime.hub.options.anchors
    final = served.final_checkpoint()
    latest = served.latest_checkpoint()
    held = store.list_anchors(log_id, size=final.row.size) if final is not None else []
    newest = [
        store.latest_anchor(log_id, kind, authority)
        for kind, authority in [("rfc3161", url) for url in options.tsa_urls]
        + [(COSIGNATURE, witness.key_id) for witness in options.witnesses]
    ]
    now = runtime.clock_ms()
    hours = current.ui.hourly.last_hours(log_id, now, 24)
    return {
        "tree_size": store.tree_size(log_id),
        "latest": latest,
        "final": final.row if final is not None else None,
        "cosigned": len(final.cosignatures) if final is not None else 0,
        "fmt": format_timestamp,
        "anchors": [_anchor(row) for row in held],
        "newest": [_anchor(row) for row in newest if row is not None],
        "tsa_urls": options.tsa_urls,
        "witnesses": [witness.key_id for witness in options.witnesses],
        "quorum": options.needed,
        "anchor_errors": served.anchorer.errors if served.anchorer is not None else {},
        "verification": last_verification(store, log_id),
        "chart": hourly_chart(hours),
        "hour_total": sum(hour.count for hour in hours),
    }


@router.get("/integrity")
@page(Permission.EVIDENCE)
async def integrity(current: Page) -> Response:
    """Checkpoints, anchors, the last full verification and events per hour."""
    facts = await run_in_threadpool(_integrity, current)
    return current.render("integrity.html", **facts, result=None)


@router.post("/integrity/verify")
@page(Permission.VERIFY)
async def verify_log_now(current: Page) -> Response:
    """Verify the whole log now (as ``POST /v1/verify``) and show the integrity page."""
    runtime = current.runtime
    async with runtime.verify_lock:
        result = await run_in_threadpool(verify_tenant, runtime, current.principal)
    facts = await run_in_threadpool(_integrity, current)
    return current.render("integrity.html", **facts, result=result)


@router.get("/export")
@page(Permission.EXPORT)
async def export_page(current: Page) -> Response:
    """The form that starts an evidence bundle for one record."""
    shown = {name: current.param(name) for name in ("target_type", "target_id")}
    return current.render("export.html", shown=shown)


@router.post("/export")
@page(Permission.EXPORT)
async def export(current: Page) -> Response:
    """Build an evidence bundle, record it as ``audit.exported``, and download it."""
    target_type, target_id = current.param("target_type"), current.param("target_id")
    reason = current.reason()
    if target_type is None or target_id is None:
        raise InputError("an export names the record: its type and id")
    if reason is None:
        raise InputError("an export needs a reason: it is recorded with the export")
    _, since_ms = ui_time(current, "since")
    _, until_ms = ui_time(current, "until")
    wanted = ExportRequest(
        target_type=target_type,
        target_id=target_id,
        reason=reason,
        exporter=current.principal.actor(),
        since_ms=since_ms,
        until_ms=until_ms,
    )
    result = await export_recorded(current.request, current.principal, wanted, current.info(reason))
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", f"evidence-{target_type}-{target_id}")[:100]
    headers = {
        "Content-Disposition": f'attachment; filename="{name}.json"',
        "Indelible-Bundle-SHA256": result.sha256,
        "Indelible-Not-Yet-Covered": str(result.not_yet_covered),
        "Cache-Control": "no-store",
    }
    return Response(result.bundle, media_type="application/json", headers=headers)
