"""The web UI's administration pages: API keys and settings of the key's own tenant (the
``manage`` permission: admins), tenants (``tenants``: admins of the operator tenant).

Each change goes through the same functions as the JSON API (``server.admin``), so it is
recorded, and undone when it cannot be, exactly as there. A new key's token is shown once.
"""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import APIRouter
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from indelible.errors import InputError
from indelible.server.admin import NewKey, NewTenant, change_settings, new_key, new_tenant, revoke
from indelible.server.runtime import TENANT_SETTINGS
from indelible.server.ui.web import Page, page
from indelible.service.access import ROLES, Permission, key_view

__all__ = ["router"]

router = APIRouter(include_in_schema=False)
_Model = TypeVar("_Model", bound=BaseModel)


def _form(model: type[_Model], values: dict[str, Any]) -> _Model:
    """``values`` checked as the JSON API checks its body; the first problem as InputError."""
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(part) for part in problem.get("loc", ()))
        raise InputError(f"{where}: {problem.get('msg', 'invalid')}") from None


async def _keys_page(current: Page, made: dict[str, Any] | None = None) -> Response:
    rows = await run_in_threadpool(current.runtime.keys.list, current.log_id)
    keys = [key_view(row, current.principal.log_name) for row in rows]
    return current.render("keys.html", keys=keys, roles=ROLES, made=made)


@router.get("/admin/keys")
@page(Permission.MANAGE)
async def keys(current: Page) -> Response:
    """The tenant's API keys (never a secret), a form to create one, revoke buttons."""
    return await _keys_page(current)


@router.post("/admin/keys")
@page(Permission.MANAGE)
async def create_key(current: Page) -> Response:
    """Create a key; its token is on the page that answers, and nowhere else."""
    body = _form(NewKey, {"name": current.param("name", 128), "role": current.param("role", 16)})
    row, token = await new_key(current.runtime, current.principal, current.info(), body)
    made = {**key_view(row, current.principal.log_name), "token": token}
    return await _keys_page(current, made)


@router.post("/admin/keys/{key_id}/revoke")
@page(Permission.MANAGE)
async def revoke_key(current: Page, key_id: str) -> Response:
    """Revoke a key of the tenant (never its last admin key)."""
    if len(key_id) != 16 or any(c not in "0123456789abcdef" for c in key_id):
        raise InputError("a key id is 16 hex digits")
    await revoke(current.runtime, current.principal, current.info(), key_id)
    return RedirectResponse("/admin/keys", 303)


@router.get("/admin/settings")
@page(Permission.MANAGE)
async def settings(current: Page) -> Response:
    """The tenant's settings."""
    values = current.runtime.tenant_settings(current.log_id)
    return current.render("settings.html", values=values, saved=False)


@router.post("/admin/settings")
@page(Permission.MANAGE)
async def save_settings(current: Page) -> Response:
    """Change the tenant's settings (each change recorded with its before and after)."""
    given = {name: current.form.get(name) == "on" for name in TENANT_SETTINGS}
    values = await change_settings(current.runtime, current.principal, current.info(), given)
    return current.render("settings.html", values=values, saved=True)


async def _tenants_page(current: Page, made: dict[str, Any] | None = None) -> Response:
    runtime = current.runtime

    def views() -> list[dict[str, object]]:
        return [runtime.tenant_view(info) for info in runtime.store.list_logs()]

    return current.render("tenants.html", tenants=await run_in_threadpool(views), made=made)


@router.get("/admin/tenants")
@page(Permission.TENANTS)
async def tenants(current: Page) -> Response:
    """Every tenant of this server (admins of the operator tenant only)."""
    return await _tenants_page(current)


@router.post("/admin/tenants")
@page(Permission.TENANTS)
async def create_tenant(current: Page) -> Response:
    """Create a tenant and its first admin key (its token shown once)."""
    body = _form(
        NewTenant, {"name": current.param("name", 63), "origin": current.param("origin", 255)}
    )
    tenant, row, token = await new_tenant(current.runtime, current.principal, current.info(), body)
    made = {
        "tenant": current.runtime.tenant_view(tenant),
        "admin_key": {**key_view(row, tenant.name), "token": token},
    }
    return await _tenants_page(current, made)
