"""Realistic billing audit events for tests, built deterministically."""

from __future__ import annotations

import uuid
from typing import Any

BASE_MS = 1_763_900_000_000  # 2025-11-23, safely in the past


def event_id(n: int, salt: int = 0) -> str:
    """A deterministic UUIDv7-shaped id."""
    value = ((BASE_MS + n) << 80) | (0x7 << 76) | (salt << 64) | (0x2 << 62) | n
    return str(uuid.UUID(int=value & ((1 << 128) - 1)))


def timestamp(ms: int) -> str:
    import datetime as dt

    moment = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def billing_event(
    n: int, *, salt: int = 0, personal: bool = False, **overrides: Any
) -> dict[str, Any]:
    """Event number n: an invoice update by a user, with a before/after change."""
    event: dict[str, Any] = {
        "event_id": event_id(n, salt),
        "event_type": "invoice.updated",
        # wraps every ~11.6 days so that any n stays in the past
        "occurred_at": timestamp(BASE_MS + (n % 1_000_000) * 1000),
        "actor": {"id": f"user-{n % 7}", "type": "user", "name": f"User {n % 7}"},
        "target": {"type": "invoice", "id": f"INV-{n % 50}"},
        "action": "update",
        "outcome": "success",
        "reason": "customer asked for a corrected address",
        "context": {"ip": "203.0.113.7", "request_id": f"req-{n}", "source": "app"},
        "changes": [
            {"field": "amount_due", "before": n * 100, "after": n * 100 + 50},
            {"field": "status", "before": "draft", "after": "open"},
        ],
        "data": {"currency": "EUR", "customer_id": f"cus-{n % 11}"},
    }
    if personal:
        event["changes"].append(
            {"field": "email", "before": f"old{n}@example.com", "after": f"new{n}@example.com"}
        )
        event["personal"] = ["/changes/2/after", "/changes/2/before"]
    event.update(overrides)
    return event
