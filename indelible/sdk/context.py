"""Who is acting, and in which request: the audit context, carried by :mod:`contextvars`.

``with context(actor=..., request_id=..., ip=...)`` sets fields for everything recorded inside
it, in this thread or asyncio task and the tasks it starts; nested blocks override the fields
they name and inherit the rest. ``with job("nightly-invoicer", run_id=...)`` names a service
identity for background work. :func:`current_context` is the merged, frozen context in effect;
:meth:`Client.build_event <indelible.sdk.Client.build_event>` fills ``actor``, ``reason`` and
``context`` from it when they are not given.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any

__all__ = ["Context", "context", "current_context", "job"]

_CONTEXT_FIELDS = ("ip", "user_agent", "request_id", "session_id", "source")


@dataclass(frozen=True, slots=True)
class Context:
    """The audit context in effect. ``actor`` is read-only (a mapping proxy)."""

    actor: Mapping[str, Any] | None = None
    reason: str | None = None
    request_id: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    session_id: str | None = None
    source: str | None = None

    def event_context(self) -> dict[str, str]:
        """The event's ``context`` object: the fields that are set."""
        out: dict[str, str] = {}
        for name in _CONTEXT_FIELDS:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out

    def event_actor(self) -> dict[str, Any] | None:
        """A fresh copy of the actor, or None."""
        return dict(self.actor) if self.actor is not None else None


_EMPTY = Context()
_current: ContextVar[Context] = ContextVar("indelible_audit_context", default=_EMPTY)


def current_context() -> Context:
    """The merged, frozen audit context in effect here."""
    return _current.get()


def _frozen_actor(actor: Mapping[str, Any]) -> Mapping[str, Any]:
    if not isinstance(actor, Mapping):
        raise TypeError("actor must be a mapping such as {'id': 'u-1', 'type': 'user'}")
    return MappingProxyType(dict(actor))


@contextmanager
def context(
    *,
    actor: Mapping[str, Any] | None = None,
    request_id: str | None = None,
    ip: str | None = None,
    user_agent: str | None = None,
    session_id: str | None = None,
    reason: str | None = None,
    source: str | None = None,
) -> Iterator[Context]:
    """Set audit context fields for the block; the fields left out (None) are inherited."""
    given: dict[str, Any] = {
        "request_id": request_id,
        "ip": ip,
        "user_agent": user_agent,
        "session_id": session_id,
        "reason": reason,
        "source": source,
    }
    changes = {name: value for name, value in given.items() if value is not None}
    if actor is not None:
        changes["actor"] = _frozen_actor(actor)
    token = _current.set(replace(_current.get(), **changes))
    try:
        yield _current.get()
    finally:
        _current.reset(token)


@contextmanager
def job(
    name: str, *, run_id: str | None = None, reason: str | None = None, source: str = "job"
) -> Iterator[Context]:
    """A named service identity for background work.

    The actor is ``{"id": name, "type": "job"}``; ``run_id`` becomes the context's
    ``request_id``, so every event of one run can be found together.
    """
    if not isinstance(name, str) or not name:
        raise ValueError("a job needs a non-empty name")
    with context(
        actor={"id": name, "type": "job"}, request_id=run_id, reason=reason, source=source
    ) as inner:
        yield inner
