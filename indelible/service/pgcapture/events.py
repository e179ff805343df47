"""One outbox row → one Indelible event, with an event_id derived from what it records.

The event_id is a UUIDv8 (RFC 9562 §5.8) made of the first 128 bits of

    SHA-256("indelible pg-capture event id v1\\n" || JCS({system_identifier, database,
            statement, row, at_us, event}))

where ``event`` is the whole event without its ``event_id``. The same outbox row always gives
the same event, byte for byte, and so the same id: a row sent again after a crash, a lost
answer or a restore of the database is an idempotent replay (Indelible answers with the
original receipt). After a restore from a backup the outbox numbers (statement, row) are
handed out again, to other changes: their content differs, so their ids do too, and they are
recorded rather than mistaken for replays. The system identifier (``pg_control_system()``)
and the database name keep two databases' rows apart.

Pure: no database, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from indelible.core.encoding import canonical
from indelible.core.ids import uuid8_sha256
from indelible.core.timestamps import format_timestamp
from indelible.service.pgcapture.catalog import Generation
from indelible.service.pgcapture.values import encode

__all__ = ["ChangeRow", "Source", "build_event", "derive_event_id"]

_OPS = {
    "I": ("create", "created", "insert"),
    "U": ("update", "updated", "update"),
    "D": ("delete", "deleted", "delete"),
    "T": ("delete", "deleted", "truncate"),
}
_DOMAIN = b"indelible pg-capture event id v1\n"


@dataclass(frozen=True, slots=True)
class Source:
    """The database the outbox is in."""

    system_identifier: str
    database: str


@dataclass(frozen=True, slots=True)
class ChangeRow:
    """One outbox row with its statement's context; values are PostgreSQL's text output."""

    stmt: int
    id: int
    op: str
    txid: int
    at_us: int
    session_role: str
    role_name: str
    application_name: str | None
    actor_id: str | None
    actor_type: str | None
    request_id: str | None
    reason: str | None
    ip: str | None
    before: tuple[str | None, ...]
    after: tuple[str | None, ...]


def derive_event_id(source: Source, row: ChangeRow, event: dict[str, Any]) -> str:
    """The UUIDv8 of an event (given without ``event_id``) built from ``row``."""
    material = canonical(
        {
            "system_identifier": source.system_identifier,
            "database": source.database,
            "statement": row.stmt,
            "row": row.id,
            "at_us": row.at_us,
            "event": event,
        }
    )
    return uuid8_sha256(_DOMAIN + material)


def _key_id(texts: list[str | None]) -> str:
    if len(texts) == 1:
        return str(texts[0])
    return orjson.dumps(texts).decode()


def _int(value: int) -> int | str:
    return value if value <= 2**53 - 1 else str(value)


def build_event(source: Source, g: Generation, row: ChangeRow) -> dict[str, Any]:
    """The event of ``row`` (docs/capture.md, The event), ``event_id`` included."""
    action, past, statement = _OPS[row.op]
    creates = row.op == "I"
    values = row.after if creates or row.op == "U" else row.before
    key = [values[i] for i in g.key_slots]
    event: dict[str, Any] = {
        "event_type": f"{g.target_type}.{past}",
        "occurred_at": format_timestamp(row.at_us // 1000),
        "action": action,
        "outcome": "success",
        "target": {"type": g.target_type, "id": _key_id(key)},
        "changes": _changes(g, row),
    }
    if row.op == "U":
        old_key = [row.before[i] for i in g.key_slots]
        if old_key != key:
            event["related"] = [{"type": g.target_type, "id": _key_id(old_key)}]
    context: dict[str, str] = {}
    if row.actor_id is not None:
        event["actor"] = {"id": row.actor_id, "type": row.actor_type or "user"}
        context["source"] = "app"
    else:
        event["actor"] = {"id": row.session_role, "type": "db_role"}
        context["source"] = "db_trigger"
    if row.request_id is not None:
        context["request_id"] = row.request_id
    if row.ip is not None:
        context["ip"] = row.ip
    event["context"] = context
    if row.reason is not None:
        event["reason"] = row.reason
    event["data"] = {
        "database": source.database,
        "table": g.table,
        "statement": statement,
        "txid": _int(row.txid),
        "db_user": row.session_role,
        "current_user": row.role_name,
        "application_name": row.application_name,
        "outbox": {"statement": row.stmt, "row": row.id},
    }
    event["event_id"] = derive_event_id(source, row, event)
    return event


def _changes(g: Generation, row: ChangeRow) -> list[dict[str, Any]]:
    changes: list[dict[str, Any]] = []
    for i, column in enumerate(g.columns):
        change: dict[str, Any] = {"field": column.name}
        if row.op == "I":
            change["after"] = encode(column.kind, row.after[i])
        elif row.op in ("D", "T"):
            change["before"] = encode(column.kind, row.before[i])
        elif row.before[i] != row.after[i]:
            change["before"] = encode(column.kind, row.before[i])
            change["after"] = encode(column.kind, row.after[i])
        else:
            continue
        changes.append(change)
    return changes
