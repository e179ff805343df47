"""A ``logging.Handler`` that records log records marked as audit as events.

::

    logging.getLogger("billing").addHandler(AuditLogHandler(client))
    log.info("invoice voided", extra={"audit": {"event_type": "invoice.voided",
             "target": {"type": "invoice", "id": "INV-1"}, "reason": "duplicate"}})

A record is an audit record when it has an ``audit`` attribute (``extra={"audit": {...}}``)
that is a mapping with an ``event_type``; the mapping's other keys are the arguments of
:meth:`Client.build_event <indelible.sdk.Client.build_event>`. The message, logger and level
are added to ``data`` (as ``log_message``, ``logger``, ``level``) unless ``data`` names them.
Other records are ignored. ``emit`` never raises into the application's logging: a record
that cannot be recorded (invalid, outbox full) goes to ``handleError`` (printed to stderr
like any failing handler) and is counted in ``failures``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from indelible.sdk.client import Client

__all__ = ["AuditLogHandler"]


class AuditLogHandler(logging.Handler):
    """Turn log records carrying ``audit`` into recorded events."""

    def __init__(self, client: Client, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.client = client
        self.failures = 0

    def emit(self, record: logging.LogRecord) -> None:
        audit = getattr(record, "audit", None)
        if not isinstance(audit, Mapping) or "event_type" not in audit:
            return
        try:
            fields: dict[str, Any] = dict(audit)
            event_type = fields.pop("event_type")
            data = dict(fields.get("data") or {})
            data.setdefault("log_message", record.getMessage())
            data.setdefault("logger", record.name)
            data.setdefault("level", record.levelname)
            fields["data"] = data
            self.client.record(event_type, **fields)
        except Exception:
            self.failures += 1
            self.handleError(record)
