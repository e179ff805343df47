"""Evidence routes of the JSON API: proofs, exact leaf bytes, anchors and evidence bundles.

Proofs and anchors reveal hashes, sizes and signatures only (the ``evidence`` permission); a
leaf is audit data (``read``, recorded as ``audit.read``); an evidence bundle is an export
(``export``, recorded as ``audit.exported`` before it is handed out).
"""

from __future__ import annotations

import base64
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from indelible.core.timestamps import format_timestamp
from indelible.errors import NotFound
from indelible.server.api import json_response
from indelible.server.auth import authorized, request_info, runtime_of
from indelible.server.docs import errors
from indelible.server.reads import audited_read, parse_time, refuse_unknown
from indelible.service import proofs
from indelible.service.access import Permission, Principal
from indelible.service.audit import RequestInfo
from indelible.service.export import ExportRequest, ExportResult, export_bundle
from indelible.service.hub import LogRuntime
from indelible.storage.base import AnchorRow

__all__ = ["export_recorded", "router"]

router = APIRouter()

EVIDENCE = Annotated[Principal, Depends(authorized(Permission.EVIDENCE))]
READ = Annotated[Principal, Depends(authorized(Permission.READ))]
EXPORT = Annotated[Principal, Depends(authorized(Permission.EXPORT))]
Size = Annotated[int | None, Query(ge=1, le=(1 << 63) - 1)]
_JSON = {"content": {"application/json": {"schema": {"type": "object"}}}}
_TEXT_FIELD = 1_024


def _served(request: Request, principal: Principal) -> LogRuntime:
    return runtime_of(request).hub.get(principal.log_id)


def _final_size(served: LogRuntime) -> int:
    final = served.final_checkpoint()
    if final is None:
        raise NotFound("no final checkpoint yet")
    return final.row.size


@router.get(
    "/v1/proofs/inclusion",
    responses={200: _JSON, **errors(400, 401, 403, 404, 422, 429)},
    tags=["evidence"],
)
async def inclusion(
    request: Request,
    principal: EVIDENCE,
    seq: Annotated[int, Query(ge=0, le=(1 << 63) - 2)],
    tree_size: Size = None,
) -> Response:
    """RFC 9162 inclusion proof of entry ``seq`` in the tree of ``tree_size`` (default: the
    newest final checkpoint)."""
    refuse_unknown(request, frozenset({"seq", "tree_size"}))
    served = _served(request, principal)

    def prove() -> dict[str, Any]:
        size = tree_size if tree_size is not None else _final_size(served)
        proof = proofs.inclusion_proof(
            served.opened.store, served.info, seq, size, cache=served.tiles
        )
        return proof.to_dict()

    return json_response(await run_in_threadpool(prove))


@router.get(
    "/v1/proofs/consistency",
    responses={200: _JSON, **errors(400, 401, 403, 404, 422, 429)},
    tags=["evidence"],
)
async def consistency(
    request: Request,
    principal: EVIDENCE,
    old: Annotated[int, Query(ge=1, le=(1 << 63) - 1)],
    new: Size = None,
) -> Response:
    """RFC 9162 consistency proof from the tree of ``old`` to the tree of ``new`` (default:
    the newest final checkpoint), with the signed checkpoint of ``new``."""
    refuse_unknown(request, frozenset({"old", "new"}))
    served = _served(request, principal)

    def prove() -> dict[str, Any]:
        size = new if new is not None else _final_size(served)
        store = served.opened.store
        proof = proofs.consistency_proof(store, served.info, old, size, cache=served.tiles)
        document = proof.to_dict()
        final = served.final_checkpoint()
        if final is not None and final.row.size == size:
            document["checkpoint"] = final.note
        else:
            document["checkpoint"] = _note_or_none(served, size)
        return document

    return json_response(await run_in_threadpool(prove))


def _note_or_none(served: LogRuntime, size: int) -> str | None:
    try:
        return served.opened.store.get_checkpoint(served.info.log_id, size).note
    except NotFound:
        return None


@router.get(
    "/v1/leaves/{seq}",
    responses={
        200: {"content": {"application/json": {"schema": {"type": "object"}}}},
        **errors(400, 401, 403, 404, 422, 429, 503),
    },
    tags=["evidence"],
)
async def leaf(
    request: Request, principal: READ, seq: Annotated[int, Path(ge=0, le=(1 << 63) - 2)]
) -> Response:
    """The exact leaf bytes of entry ``seq`` (RFC 8785 JSON; its SHA-256 with a 0x00 prefix
    is the leaf hash the proofs use)."""
    refuse_unknown(request, frozenset())
    store = runtime_of(request).store
    row = await audited_read(
        request,
        principal,
        "leaves",
        {"seq": seq},
        lambda: store.get_entry(principal.log_id, seq),
        lambda _: 1,
    )
    return Response(row.leaf, media_type="application/json")


def _anchor_view(row: AnchorRow) -> dict[str, Any]:
    return {
        "size": row.size,
        "kind": row.kind,
        "authority": row.authority,
        "created_at": format_timestamp(row.created_at_ms),
        "evidence": base64.b64encode(row.evidence).decode("ascii"),
    }


@router.get(
    "/v1/anchors",
    responses={200: _JSON, **errors(400, 401, 403, 404, 422, 429)},
    tags=["evidence"],
)
async def anchors(request: Request, principal: EVIDENCE, size: Size = None) -> Response:
    """The timestamp tokens and cosignatures held for the checkpoint of ``size`` (default:
    the newest final checkpoint), and the anchoring errors not yet cleared."""
    refuse_unknown(request, frozenset({"size"}))
    served = _served(request, principal)

    def listing() -> dict[str, Any]:
        at = size if size is not None else _final_size(served)
        rows = served.opened.store.list_anchors(served.info.log_id, size=at)
        problems = served.anchorer.errors if served.anchorer is not None else {}
        return {"size": at, "anchors": [_anchor_view(r) for r in rows], "errors": problems}

    return json_response(await run_in_threadpool(listing))


_RFC3339_UTC = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,3})?(Z|\+00:00)$"
_Text = Annotated[str, Field(min_length=1, max_length=_TEXT_FIELD, pattern=r"\S")]
_Time = Annotated[str | None, Field(default=None, max_length=40, pattern=_RFC3339_UTC)]


class NewExport(BaseModel):
    """What to export: one record's events, optionally within ``[since, until)``."""

    model_config = ConfigDict(extra="forbid", strict=True)
    target_type: _Text
    target_id: _Text
    reason: _Text
    since: _Time = None
    until: _Time = None


async def export_recorded(
    request: Request, principal: Principal, wanted: ExportRequest, info: RequestInfo
) -> ExportResult:
    """Build the evidence bundle ``wanted`` and record it as ``audit.exported``; only then
    may it be handed out (``POST /v1/exports`` and the web UI's export page)."""
    runtime = runtime_of(request)
    served = _served(request, principal)
    signer = served.opened.signer
    assert signer is not None  # a served log always has its signing key

    def build() -> ExportResult:
        return export_bundle(
            served.opened.store,
            served.info,
            signer,
            served.final_checkpoint(),
            wanted,
            anchors=runtime.hub.options.anchors,
            clock_ms=runtime.clock_ms,
            max_events=runtime.limits.max_export_events,
        )

    result = await run_in_threadpool(build)
    await runtime.record(
        principal.log_id,
        "audit.exported",
        actor=principal.actor(),
        action="export",
        request=info,
        target={"type": wanted.target_type, "id": wanted.target_id},
        data={"query": wanted.query(), "reason": wanted.reason, **result.summary()},
    )
    return result


@router.post(
    "/v1/exports",
    responses={200: _JSON, **errors(400, 401, 403, 404, 413, 422, 429, 503)},
    tags=["evidence"],
)
async def export(request: Request, principal: EXPORT, body: NewExport) -> Response:
    """An evidence bundle for one record: its events' leaves, an inclusion proof of each
    against one final checkpoint, that checkpoint's cosignatures and timestamp tokens, and a
    manifest signed by the log's key. Recorded as ``audit.exported`` before it is returned."""
    refuse_unknown(request, frozenset())
    wanted = ExportRequest(
        target_type=body.target_type,
        target_id=body.target_id,
        reason=body.reason,
        exporter=principal.actor(),
        since_ms=parse_time("since", body.since),
        until_ms=parse_time("until", body.until),
    )
    result = await export_recorded(request, principal, wanted, request_info(request))
    headers = {
        "Content-Disposition": 'attachment; filename="evidence.json"',
        "Indelible-Bundle-SHA256": result.sha256,
        "Indelible-Not-Yet-Covered": str(result.not_yet_covered),
    }
    return Response(result.bundle, media_type="application/json", headers=headers)
