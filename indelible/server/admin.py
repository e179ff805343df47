"""Administration: API keys and settings of the key's own tenant; tenants (operator admins).

Every change is an audit event in the tenant's log, written before the answer leaves; when
it cannot be written the change is undone (a new key is revoked, a setting restored) and the
request fails. A new key's token appears once, in the response that created it.
"""

from __future__ import annotations

import socket
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from indelible.errors import LastAdminKey
from indelible.server.api import json_response
from indelible.server.auth import authorized, request_info, runtime_of
from indelible.server.docs import errors
from indelible.server.runtime import Runtime
from indelible.service.access import Permission, Principal, key_view
from indelible.service.audit import RequestInfo, key_subject
from indelible.service.logs import default_origin
from indelible.storage.base import ApiKeyRow, LogInfo

__all__ = [
    "NewKey",
    "NewTenant",
    "change_settings",
    "new_key",
    "new_tenant",
    "revoke",
    "router",
]


router = APIRouter()

MANAGE = Annotated[Principal, Depends(authorized(Permission.MANAGE))]
TENANTS = Annotated[Principal, Depends(authorized(Permission.TENANTS))]
Role = Literal["writer", "reader", "auditor", "admin"]


class NewKey(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    name: str = Field(min_length=1, max_length=128, pattern=r"^[\x20-\x7e]+$")
    role: Role


class SettingsPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    require_read_reason: bool | None = None


class NewTenant(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    name: str = Field(min_length=1, max_length=63, pattern=r"^[a-z0-9][a-z0-9_-]*$")
    origin: str | None = Field(default=None, max_length=255, pattern=r"^[\x21-\x2a\x2c-\x7e]+$")


# ---- API keys
@router.get("/v1/keys", responses=errors(401, 403, 429), tags=["admin"])
async def list_keys(request: Request, principal: MANAGE) -> Response:
    """The tenant's API keys, revoked ones included (never a secret)."""
    runtime = runtime_of(request)
    rows = await run_in_threadpool(runtime.keys.list, principal.log_id)
    return json_response({"keys": [key_view(row, principal.log_name) for row in rows]})


@router.post(
    "/v1/keys", status_code=201, responses=errors(400, 401, 403, 422, 429, 503), tags=["admin"]
)
async def create_key(request: Request, principal: MANAGE, body: NewKey) -> Response:
    """A new API key of the tenant; its token is in this response and nowhere else."""
    row, token = await new_key(runtime_of(request), principal, request_info(request), body)
    return json_response({**key_view(row, principal.log_name), "token": token}, 201)


async def new_key(
    runtime: Runtime, principal: Principal, info: RequestInfo, body: NewKey
) -> tuple[ApiKeyRow, str]:
    """Create the key and record ``audit.key_created`` (the key is revoked if that fails)."""
    row, token = await run_in_threadpool(
        runtime.keys.create, principal.log_id, body.role, body.name, principal.key_id
    )
    try:
        await runtime.record(
            principal.log_id,
            "audit.key_created",
            actor=principal.actor(),
            action="create",
            request=info,
            **key_subject(row),
        )
    except BaseException:
        await run_in_threadpool(runtime.keys.revoke, principal.log_id, row.key_id)
        raise
    return row, token


@router.delete("/v1/keys/{key_id}", responses=errors(401, 403, 404, 422, 429, 503), tags=["admin"])
async def revoke_key(
    request: Request,
    principal: MANAGE,
    key_id: Annotated[str, Path(pattern=r"^[0-9a-f]{16}$")],
) -> Response:
    """Revoke one of the tenant's keys; it fails on its next request. Idempotent."""
    row = await revoke(runtime_of(request), principal, request_info(request), key_id)
    return json_response(key_view(row, principal.log_name))


async def revoke(
    runtime: Runtime, principal: Principal, info: RequestInfo, key_id: str
) -> ApiKeyRow:
    """Revoke the key (never the tenant's last admin key) and record ``audit.key_revoked``."""
    before = await run_in_threadpool(runtime.keys.get, principal.log_id, key_id)
    if before.role == "admin" and before.revoked_at_ms is None:
        admins = [
            row
            for row in await run_in_threadpool(runtime.keys.list, principal.log_id)
            if row.role == "admin" and row.revoked_at_ms is None
        ]
        if len(admins) == 1:
            raise LastAdminKey(
                "this is the tenant's last admin key: create another admin key first"
            )
    row = await run_in_threadpool(runtime.keys.revoke, principal.log_id, key_id)
    if before.revoked_at_ms is None:
        await runtime.record(
            principal.log_id,
            "audit.key_revoked",
            actor=principal.actor(),
            action="revoke",
            request=info,
            **key_subject(row),
        )
    return row


# ---- tenant settings
@router.get("/v1/settings", responses=errors(401, 403, 429), tags=["admin"])
async def get_settings(request: Request, principal: MANAGE) -> Response:
    """The tenant's settings."""
    return json_response(runtime_of(request).tenant_settings(principal.log_id))


@router.patch("/v1/settings", responses=errors(400, 401, 403, 422, 429, 503), tags=["admin"])
async def patch_settings(request: Request, principal: MANAGE, body: SettingsPatch) -> Response:
    """Change settings of the tenant; each change is recorded with its before and after."""
    runtime = runtime_of(request)
    given = body.model_dump(exclude_none=True)
    return json_response(await change_settings(runtime, principal, request_info(request), given))


async def change_settings(
    runtime: Runtime, principal: Principal, info: RequestInfo, given: dict[str, Any]
) -> dict[str, Any]:
    """Apply and record ``audit.settings_changed`` (restored if that fails); the settings."""
    before = runtime.tenant_settings(principal.log_id)
    changes = [
        {"field": name, "before": before[name], "after": value}
        for name, value in given.items()
        if before[name] != value
    ]
    for change in changes:
        await run_in_threadpool(
            runtime.set_tenant_setting, principal.log_id, change["field"], change["after"]
        )
    if changes:
        try:
            await runtime.record(
                principal.log_id,
                "audit.settings_changed",
                actor=principal.actor(),
                action="update",
                request=info,
                target={"type": "tenant", "id": principal.log_name},
                changes=changes,
            )
        except BaseException:
            for change in changes:
                await run_in_threadpool(
                    runtime.set_tenant_setting, principal.log_id, change["field"], change["before"]
                )
            raise
    return runtime.tenant_settings(principal.log_id)


# ---- tenants
@router.get("/v1/tenants", responses=errors(401, 403, 429), tags=["admin"])
async def list_tenants(request: Request, principal: TENANTS) -> Response:
    """Every tenant of this server (operator admins only)."""
    runtime = runtime_of(request)

    def views() -> list[dict[str, Any]]:
        return [runtime.tenant_view(info) for info in runtime.store.list_logs()]

    return json_response({"tenants": await run_in_threadpool(views)})


@router.post(
    "/v1/tenants",
    status_code=201,
    responses=errors(400, 401, 403, 409, 422, 429, 503),
    tags=["admin"],
)
async def create_tenant(request: Request, principal: TENANTS, body: NewTenant) -> Response:
    """A new tenant: its own log, origin and signing key, and its first admin key (whose
    token is in this response and nowhere else)."""
    runtime = runtime_of(request)
    tenant, row, token = await new_tenant(runtime, principal, request_info(request), body)
    return json_response(
        {
            "tenant": runtime.tenant_view(tenant),
            "admin_key": {**key_view(row, tenant.name), "token": token},
        },
        201,
    )


async def new_tenant(
    runtime: Runtime, principal: Principal, info: RequestInfo, body: NewTenant
) -> tuple[LogInfo, ApiKeyRow, str]:
    """Create the tenant and its first admin key, and record both."""
    origin = body.origin or default_origin(socket.gethostname(), body.name)
    tenant = await run_in_threadpool(runtime.create_tenant, body.name, origin)
    row, token = await run_in_threadpool(
        runtime.keys.create, tenant.log_id, "admin", f"{body.name} admin", principal.key_id
    )
    about = {"name": tenant.name, "origin": tenant.origin, "vkey": tenant.vkey}
    target = {"type": "tenant", "id": tenant.name}
    try:
        await _record_tenant(runtime, principal, info, tenant, row, about, target)
    except BaseException:
        # The log exists now and stays (logs are never deleted); its first key does not.
        await run_in_threadpool(runtime.keys.revoke, tenant.log_id, row.key_id)
        raise
    return tenant, row, token


async def _record_tenant(
    runtime: Runtime,
    principal: Principal,
    info: RequestInfo,
    tenant: LogInfo,
    row: ApiKeyRow,
    about: dict[str, Any],
    target: dict[str, str],
) -> None:
    tenant_subject = {"target": target, "data": about}
    records = [
        (principal.log_id, "audit.tenant_created", tenant_subject),
        (tenant.log_id, "audit.tenant_created", tenant_subject),
        (tenant.log_id, "audit.key_created", key_subject(row)),
    ]
    for log_id, event_type, subject in records:
        await runtime.record(
            log_id, event_type, actor=principal.actor(), action="create", request=info, **subject
        )
