"""Authentication and authorization of every ``/v1`` route.

Each route declares the one :class:`~indelible.service.access.Permission` it needs with
``Depends(authorized(permission))`` (the ingest fast path calls :func:`admit` itself).
Admission:

1. refuses (429) a client address that has failed authentication too often lately;
2. authenticates the bearer token; a failure is counted against the address and written to
   the operator tenant's log as ``audit.auth_failed`` (and ``audit.auth_rate_limited`` when it
   starts a block) before the 401 is sent;
3. checks the key's role allows the permission; a refusal is written to the key's own log as
   ``audit.access_denied`` before the 403 is sent.

The tenant of every request is the key's own: no route takes a tenant from the request.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from indelible.errors import IndelibleError, InputError, Unauthenticated
from indelible.server.runtime import Runtime
from indelible.service.access import Permission, Principal
from indelible.service.audit import SYSTEM_ACTOR, RequestInfo

__all__ = [
    "admit",
    "authorized",
    "bearer_token",
    "client_address",
    "deny",
    "request_info",
    "runtime_of",
    "user_agent",
]

log = logging.getLogger("indelible.server")

bearer = HTTPBearer(
    auto_error=False,
    bearerFormat="idl_<key id>_<secret>",
    description="An Indelible API key: `Authorization: Bearer idl_...`.",
)


def runtime_of(request: Request) -> Runtime:
    runtime = request.app.state.runtime
    assert isinstance(runtime, Runtime)
    return runtime


def client_address(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


def request_info(request: Request) -> RequestInfo:
    """Where the request came from, and the reader's stated reason (``X-Audit-Reason``)."""
    headers = request.headers
    reason = headers.get("x-audit-reason")
    if reason is not None:
        try:  # header bytes arrive decoded as Latin-1; the reason is UTF-8 text
            reason = reason.encode("latin-1").decode("utf-8").strip()
        except UnicodeError:
            raise InputError("X-Audit-Reason must be UTF-8 text") from None
        limit = runtime_of(request).limits.max_reason_chars
        if len(reason) > limit:
            raise InputError(f"X-Audit-Reason is {len(reason)} characters; the limit is {limit}")
        if not reason.isprintable():
            raise InputError("X-Audit-Reason must be printable text")
    request_id = headers.get("x-request-id")
    if request_id is not None and (len(request_id) > 200 or not request_id.isprintable()):
        raise InputError("X-Request-Id must be at most 200 printable characters")
    return RequestInfo(
        ip=client_address(request),
        user_agent=user_agent(request),
        request_id=request_id or None,
        reason=reason or None,
    )


def user_agent(request: Request) -> str | None:
    user_agent = request.headers.get("user-agent")
    return user_agent[:512] if user_agent else None


# Who an unauthenticated request is: nobody known; its address is in the event's context.
ANONYMOUS = {"id": "anonymous", "type": "service", "name": "unauthenticated client"}
_CLAIMED_KEY = re.compile(r"^idl_([0-9a-f]{16})_")


async def _record_failure(
    runtime: Runtime,
    request: Request,
    token: str | None,
    failure: Unauthenticated,
    tripped: bool,
) -> None:
    """Write the failed authentication to the operator log; a failure to write is logged
    (the request is refused all the same)."""
    info = RequestInfo(ip=client_address(request), user_agent=user_agent(request))
    data = {"reason": failure.message, "route": request.url.path}
    claimed = _CLAIMED_KEY.match(token or "")
    if claimed is not None:
        data["claimed_key_id"] = claimed.group(1)  # the public part only, never the secret
    try:
        operator = runtime.keys.operator_log_id()
        await runtime.record(
            operator,
            "audit.auth_failed",
            actor=ANONYMOUS,
            action="authenticate",
            outcome="failure",
            request=info,
            data=data,
        )
        if tripped:
            await runtime.record(
                operator,
                "audit.auth_rate_limited",
                actor=SYSTEM_ACTOR,
                action="block",
                request=info,
                data={"address": info.ip, "limit": runtime.limiter.limit},
            )
    except IndelibleError as exc:
        log.error("could not write audit.auth_failed: [%s] %s", exc.code, exc.message)


def authorized(permission: Permission) -> Callable[..., Awaitable[Principal]]:
    """The dependency that admits a request holding ``permission``."""

    async def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
    ) -> Principal:
        token = credentials.credentials if credentials is not None else None
        return await admit(request, token, permission)

    return dependency


def bearer_token(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer`` header (the scheme in any case), else None."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


async def admit(request: Request, token: str | None, permission: Permission) -> Principal:
    """The principal of ``token`` when it may ``permission``; steps 1-3 of the module doc."""
    runtime = runtime_of(request)
    address = client_address(request)
    runtime.limiter.check(address)
    try:
        principal = runtime.keys.authenticate(token)
    except Unauthenticated as failure:
        tripped = runtime.limiter.fail(address)
        await _record_failure(runtime, request, token, failure, tripped)
        raise
    if not principal.allows(permission):
        await deny(request, principal, permission)
    request.state.principal = principal
    return principal


async def deny(
    request: Request, principal: Principal, permission: Permission, source: str = "api"
) -> None:
    """Write ``audit.access_denied`` to the principal's log, then raise ``Forbidden``."""
    await runtime_of(request).record(
        principal.log_id,
        "audit.access_denied",
        actor=principal.actor(),
        action=permission.value,
        outcome="denied",
        request=RequestInfo(
            ip=client_address(request), user_agent=user_agent(request), source=source
        ),
        data={"route": request.url.path, "method": request.method, "role": principal.role},
    )
    principal.require(permission)
