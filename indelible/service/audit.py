"""Events Indelible writes about itself: meta-audit of reads, keys, settings, tenants, logins.

Every one is an ordinary event in the tenant's own verifiable log, under the reserved
``audit.`` namespace (clients may not send ``audit.*`` events). Each is written through the
log's sequencer and acknowledged only after its durable commit; a caller that cannot get it
written must fail the action it describes (a read is not answered, a key is revoked again).

=========================  ===================================================================
``audit.read``             a query, get, history, state or export: who, route, filter, results
``audit.key_created``      an API key was created (target: the key; data: role, name)
``audit.key_revoked``      an API key was revoked
``audit.settings_changed`` a tenant setting changed (``changes`` holds before and after)
``audit.tenant_created``   a tenant (log) was created, in the operator log and the new log
``audit.auth_failed``      an authentication failed (in the operator log); at most
                           ``auth_fail_limit`` per address per window, then one
``audit.auth_rate_limited`` when the address is blocked
``audit.access_denied``    a key asked for a route its role does not allow (in its own log)
``audit.exported``         an evidence bundle was exported (target: the record; data: query,
                           reason, the bundle's SHA-256, checkpoint size and entry count)
``audit.login``            a web UI session started with the key (``audit.logout``: ended)
=========================  ===================================================================
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from indelible.core.event import Event, format_timestamp, validate_event
from indelible.core.ids import uuid7
from indelible.service.hub import Hub
from indelible.service.ingest import Receipt
from indelible.storage.base import ApiKeyRow

__all__ = [
    "RESERVED_PREFIX",
    "RESERVED_PREFIXES",
    "SYSTEM_ACTOR",
    "AuditWriter",
    "RequestInfo",
    "key_subject",
]

RESERVED_PREFIX = "audit."
# every namespace clients may not write in: Indelible's own events, and its alerts (alert.fired)
RESERVED_PREFIXES = (RESERVED_PREFIX, "alert.")
SYSTEM_ACTOR = {"id": "indelible", "type": "system", "name": "Indelible"}


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """Where a request came from, as the meta-audit event's ``context`` and ``reason``."""

    ip: str | None = None
    user_agent: str | None = None
    request_id: str | None = None
    reason: str | None = None
    source: str = "api"  # "ui" for the web UI

    def context(self) -> dict[str, str]:
        context = {"source": self.source}
        if self.ip and _is_ip(self.ip):
            context["ip"] = self.ip
        if self.user_agent:
            context["user_agent"] = self.user_agent
        if self.request_id:
            context["request_id"] = self.request_id
        return context


def _is_ip(text: str) -> bool:
    """An IP address as ``context.ip`` accepts it (a socket peer may be a path or a name)."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def key_subject(row: ApiKeyRow) -> dict[str, Any]:
    """The ``target`` and ``data`` of an API key's audit event (never its secret or hash)."""
    return {
        "target": {"type": "api_key", "id": row.key_id},
        "data": {"role": row.role, "name": row.name},
    }


class AuditWriter:
    """Builds, validates and durably appends Indelible's own events."""

    def __init__(
        self,
        hub: Hub | None,
        *,
        clock_ms: Callable[[], int],
        random_bytes: Callable[[int], bytes],
    ) -> None:
        """``hub`` may be None for a writer that only builds events (the command line)."""
        self._hub, self._clock, self._random = hub, clock_ms, random_bytes

    def build(
        self,
        event_type: str,
        *,
        actor: dict[str, str],
        action: str,
        request: RequestInfo | None = None,
        outcome: str = "success",
        target: dict[str, str] | None = None,
        data: dict[str, Any] | None = None,
        changes: list[dict[str, Any]] | None = None,
    ) -> Event:
        """The validated event (an ``audit.*`` type), ready for a sequencer."""
        now = self._clock()
        event: dict[str, Any] = {
            "event_id": uuid7(now, self._random),
            "event_type": event_type,
            "occurred_at": format_timestamp(now),
            "actor": actor,
            "action": action,
            "outcome": outcome,
            "context": (request or RequestInfo()).context(),
        }
        if target is not None:
            event["target"] = target
        if request is not None and request.reason:
            event["reason"] = request.reason
        if data is not None:
            event["data"] = data
        if changes:
            event["changes"] = changes
        return validate_event(event, now_ms=now)

    def write(self, log_id: int, event_type: str, **fields: Any) -> Receipt:
        """Build the event and append it to ``log_id``, waiting for the durable commit."""
        if self._hub is None:
            raise TypeError("this AuditWriter only builds events: it has no hub to write to")
        return self._hub.get(log_id).append([self.build(event_type, **fields)])[0]
