"""ASGI middleware (Starlette, FastAPI, any ASGI app): the audit context of each request.

::

    app.add_middleware(AuditContextMiddleware, actor=lambda scope: ...)

For every HTTP and WebSocket request it sets, for the code that handles it,
``request_id`` (the ``X-Request-Id`` header, or a new UUID), ``ip`` (the ASGI client
address; a proxy's forwarded address only if the server was told to trust it, as uvicorn's
``--forwarded-allow-ips`` does), ``user_agent`` and, through ``actor(scope)``, the actor.
``actor`` may be a function or a coroutine function returning an actor mapping or None; with
Starlette's ``AuthenticationMiddleware`` in front, ``scope["user"]`` is the user. Values a
client controls are shortened and cleaned so that they can never make ``record()`` fail.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from indelible.sdk._request import (
    MAX_REQUEST_ID,
    MAX_USER_AGENT,
    clean_ip,
    clean_text,
    new_request_id,
)
from indelible.sdk.context import context

__all__ = ["AuditContextMiddleware"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
ActorFrom = Callable[[Scope], Mapping[str, Any] | Awaitable[Mapping[str, Any] | None] | None]
SessionFrom = Callable[[Scope], str | None]


class AuditContextMiddleware:
    """Set :func:`indelible.sdk.context` from each request (see the module docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        actor: ActorFrom | None = None,
        session_id: SessionFrom | None = None,
        request_id_header: str = "x-request-id",
        generate_request_id: bool = True,
        source: str | None = None,
    ) -> None:
        self.app = app
        self.actor, self.session_id = actor, session_id
        self.header = request_id_header.lower().encode("latin-1")
        self.generate_request_id = generate_request_id
        self.source = source

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = user_agent = None
        for name, value in scope.get("headers") or ():
            if name == self.header:
                request_id = clean_text(value.decode("latin-1"), MAX_REQUEST_ID)
            elif name == b"user-agent":
                user_agent = clean_text(value.decode("latin-1"), MAX_USER_AGENT)
        if request_id is None and self.generate_request_id:
            request_id = new_request_id()
        client = scope.get("client")
        actor = await self._actor(scope)
        session = self.session_id(scope) if self.session_id is not None else None
        with context(
            actor=actor,
            request_id=request_id,
            ip=clean_ip(client[0]) if client else None,
            user_agent=user_agent,
            session_id=clean_text(session, MAX_REQUEST_ID),
            source=self.source,
        ):
            await self.app(scope, receive, send)

    async def _actor(self, scope: Scope) -> Mapping[str, Any] | None:
        if self.actor is None:
            return None
        found = self.actor(scope)
        if inspect.isawaitable(found):
            found = await found
        return found
