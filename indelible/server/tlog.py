"""Each tenant's log in the C2SP vocabulary: checkpoint, tiles and entry bundles.

Under ``/tlog/<tenant>/`` (c2sp.org/tlog-tiles), so that generic transparency-log clients,
monitors and witnesses read the log unmodified:

- ``checkpoint``: the newest *final* checkpoint (the witness policy met), a signed note with
  its cosignatures appended; ``Cache-Control: no-cache``.
- ``tile/<L>/<N>[.p/<W>]``: hash tiles. Full tiles never change and are cached as immutable;
  a partial tile of a given width never changes either, but is replaced by the full tile as
  the tree grows, so it is cached for a minute only.
- ``tile/entries/<N>[.p/<W>]``: entry bundles, the leaves as big-endian uint16
  length-prefixed byte strings. They are audit data: they always need an API key allowed to
  read, and each one served is recorded (``audit.read``).

Checkpoints and hash tiles reveal only hashes and the log's size. They need an API key of the
tenant with the ``evidence`` permission unless the ``public_tlog`` setting is on.

The tenant's verification key is published at ``/.well-known/indelible/<tenant>/vkey``,
without a key: it is public by nature, and an auditor needs it before anything else.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import PlainTextResponse, Response

from indelible.core.tiles import TILE_WIDTH, parse_tile_path
from indelible.errors import Forbidden, NotFound, NotRepresentable
from indelible.server.auth import admit, bearer_token, runtime_of
from indelible.server.docs import errors
from indelible.server.reads import audited_read
from indelible.service.access import Permission, Principal
from indelible.service.hub import LogRuntime

__all__ = ["router"]

router = APIRouter()

Tenant = Annotated[str, Path(max_length=63, pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
_MAX_ENTRY = 0xFFFF  # tlog-tiles: an entry in a bundle is at most 65,535 bytes
_IMMUTABLE = "max-age=31536000, immutable"
_PARTIAL = "max-age=60"
_TILE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/octet-stream": {"schema": {"type": "string"}}}}
}
_TEXT: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/plain": {"schema": {"type": "string"}}}}
}


async def _tenant(
    request: Request, tenant: str, permission: Permission
) -> tuple[LogRuntime, Principal | None]:
    """The tenant's log, once the request may ``permission`` on it."""
    runtime = runtime_of(request)
    public = runtime.public_tlog and permission is Permission.EVIDENCE
    principal = None if public else await admit(request, bearer_token(request), permission)
    try:
        served = runtime.hub.by_name(tenant)
    except NotFound:
        if principal is None:
            raise
        served = None
    if principal is not None and (served is None or served.info.log_id != principal.log_id):
        raise Forbidden(f"this API key is not one of tenant {tenant!r}")
    assert served is not None
    return served, principal


def _cache(public: bool, policy: str) -> str:
    return f"{'public' if public else 'private'}, {policy}"


@router.get(
    "/tlog/{tenant}/checkpoint",
    responses={**_TEXT, **errors(401, 403, 404, 429)},
    response_class=PlainTextResponse,
    tags=["tlog"],
)
async def tlog_checkpoint(request: Request, tenant: Tenant) -> Response:
    """The tenant's newest final checkpoint, cosignatures included (C2SP tlog-checkpoint)."""
    served, _ = await _tenant(request, tenant, Permission.EVIDENCE)
    final = await run_in_threadpool(served.final_checkpoint)
    if final is None:
        raise NotFound("no final checkpoint yet")
    return PlainTextResponse(final.note, headers={"Cache-Control": "no-cache"})


def _hash_tile(served: LogRuntime, level: int, index: int, width: int) -> bytes:
    store, log_id = served.opened.store, served.info.log_id
    data = store.get_tile(log_id, level, index)  # NotFound: no such tile (yet)
    if len(data) < width * 32:
        raise NotFound(f"tile {level}/{index} has {len(data) // 32} hashes, not {width} yet")
    return data[: width * 32]


def _entry_bundle(served: LogRuntime, index: int, width: int) -> bytes:
    store, log_id = served.opened.store, served.info.log_id
    start = index * TILE_WIDTH
    if store.tree_size(log_id) < start + width:
        raise NotFound(f"entries {start} to {start + width - 1} are not all in the log yet")
    parts: list[bytes] = []
    for row in store.iter_entries(log_id, start, start + width):
        if len(row.leaf) > _MAX_ENTRY:
            raise NotRepresentable(
                f"entry {row.seq} is {len(row.leaf)} bytes; an entry bundle holds at most "
                f"{_MAX_ENTRY}: read it from /v1/leaves/{row.seq}"
            )
        parts.append(len(row.leaf).to_bytes(2, "big") + row.leaf)
    return b"".join(parts)


@router.get(
    "/tlog/{tenant}/tile/{path:path}",
    responses={**_TILE, **errors(400, 401, 403, 404, 422, 429)},
    response_class=Response,
    tags=["tlog"],
)
async def tlog_tile(request: Request, tenant: Tenant, path: str) -> Response:
    """A hash tile ``<L>/<N>[.p/<W>]`` or an entry bundle ``entries/<N>[.p/<W>]``."""
    level, index, width = parse_tile_path("tile/" + path)
    policy = _IMMUTABLE if width == TILE_WIDTH else _PARTIAL
    if level >= 0:
        served, principal = await _tenant(request, tenant, Permission.EVIDENCE)
        data = await run_in_threadpool(_hash_tile, served, level, index, width)
        cache = _cache(principal is None, policy)
    else:
        served, principal = await _tenant(request, tenant, Permission.READ)
        assert principal is not None
        data = await audited_read(
            request,
            principal,
            "tlog/tile/entries",
            {"index": index, "width": width},
            lambda: _entry_bundle(served, index, width),
            lambda _: width,
        )
        cache = _cache(False, policy)
    headers = {"Cache-Control": cache}
    return Response(data, media_type="application/octet-stream", headers=headers)


@router.get(
    "/.well-known/indelible/{tenant}/vkey",
    responses={**_TEXT, **errors(404)},
    response_class=PlainTextResponse,
    tags=["tlog"],
)
async def well_known_vkey(request: Request, tenant: Tenant) -> Response:
    """The tenant log's verification key (C2SP vkey), one line; no API key needed."""
    served = runtime_of(request).hub.by_name(tenant)
    return PlainTextResponse(served.info.vkey + "\n", headers={"Cache-Control": "max-age=3600"})
