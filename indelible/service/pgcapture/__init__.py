"""Capture of changes made directly in an application's PostgreSQL database (docs/capture.md).

Triggers installed in the application's database record, in the same transaction as each
INSERT, UPDATE, DELETE or TRUNCATE, the before and after values of the allowed columns and
who made the change into an outbox (:mod:`.triggers`, :mod:`.admin`); the relay moves the
outbox into an Indelible log over HTTP, at least once, with event_ids derived from the rows
so that nothing is ever recorded twice (:mod:`.relay`, :mod:`.events`, :mod:`.values`).
Needs the ``postgres`` extra (psycopg) and httpx.
"""

from __future__ import annotations

from indelible.service.pgcapture.admin import InstallResult, install, requeue, status, uninstall
from indelible.service.pgcapture.catalog import CHANNEL, SCHEMA
from indelible.service.pgcapture.events import ChangeRow, Source, build_event, derive_event_id
from indelible.service.pgcapture.relay import (
    Relay,
    RelayOptions,
    RelayStats,
    connect,
    database_errors,
)

__all__ = [
    "CHANNEL",
    "SCHEMA",
    "ChangeRow",
    "InstallResult",
    "Relay",
    "RelayOptions",
    "RelayStats",
    "Source",
    "build_event",
    "connect",
    "database_errors",
    "derive_event_id",
    "install",
    "requeue",
    "status",
    "uninstall",
]
