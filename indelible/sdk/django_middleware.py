"""Django middleware: the audit context of each request.

Add ``"indelible.sdk.django_middleware.AuditContextMiddleware"`` to ``MIDDLEWARE`` after
``AuthenticationMiddleware``. For the code that handles each request it sets ``request_id``
(the ``X-Request-Id`` header, or a new UUID), ``ip`` (``REMOTE_ADDR``: put a trusted proxy's
address rewriting in front if there is one), ``user_agent``, ``session_id`` (the session key,
when there is a session) and the actor: by default ``{"id": str(user.pk), "type": "user",
"name": user.get_username()}`` for an authenticated ``request.user``, else none; the Django
setting ``INDELIBLE_AUDIT_ACTOR`` (a callable, or its dotted path, taking the request and
returning an actor mapping or None) replaces that. Works in sync and async stacks.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from indelible.sdk._request import (
    MAX_REQUEST_ID,
    MAX_USER_AGENT,
    clean_ip,
    clean_text,
    new_request_id,
)
from indelible.sdk.context import context

__all__ = ["AuditContextMiddleware", "user_actor"]

ActorFrom = Callable[[Any], Mapping[str, Any] | None]


def _actor_of(user: Any) -> dict[str, Any] | None:
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    actor: dict[str, Any] = {"id": str(user.pk), "type": "user"}
    name = user.get_username() if hasattr(user, "get_username") else None
    if name:
        actor["name"] = str(name)
    return actor


def user_actor(request: Any) -> dict[str, Any] | None:
    """The default actor: the authenticated ``request.user``, or None."""
    return _actor_of(getattr(request, "user", None))


def _configured_actor() -> ActorFrom | None:
    from django.conf import settings
    from django.utils.module_loading import import_string

    found = getattr(settings, "INDELIBLE_AUDIT_ACTOR", None)
    if isinstance(found, str):
        found = import_string(found)
    return found


class AuditContextMiddleware:
    """Set :func:`indelible.sdk.context` from each Django request."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        from asgiref.sync import iscoroutinefunction, markcoroutinefunction

        self.get_response = get_response
        self.actor = _configured_actor()
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: Any) -> Any:
        if self.is_async:
            return self._acall(request)
        with context(actor=self._sync_actor(request), **self._fields(request)):
            return self.get_response(request)

    async def _acall(self, request: Any) -> Any:
        actor = await self._async_actor(request)
        with context(actor=actor, **self._fields(request)):
            response: Awaitable[Any] = self.get_response(request)
            return await response

    def _sync_actor(self, request: Any) -> Mapping[str, Any] | None:
        return self.actor(request) if self.actor is not None else user_actor(request)

    async def _async_actor(self, request: Any) -> Mapping[str, Any] | None:
        if self.actor is None:
            auser = getattr(request, "auser", None)
            if auser is None:
                return user_actor(request)
            return _actor_of(await auser())
        found = self.actor(request)
        if inspect.isawaitable(found):
            found = await found
        return found

    def _fields(self, request: Any) -> dict[str, Any]:
        meta = request.META
        request_id = clean_text(meta.get("HTTP_X_REQUEST_ID"), MAX_REQUEST_ID)
        session = getattr(request, "session", None)
        key = getattr(session, "session_key", None) if session is not None else None
        return {
            "request_id": request_id or new_request_id(),
            "ip": clean_ip(meta.get("REMOTE_ADDR")),
            "user_agent": clean_text(meta.get("HTTP_USER_AGENT"), MAX_USER_AGENT),
            "session_id": clean_text(key, MAX_REQUEST_ID),
        }
