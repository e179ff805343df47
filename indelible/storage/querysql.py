"""SQL shared by the stores: column lists, row mappings, and the WHERE clause of an entry
query (values are always bound, never inlined)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from typing import Any

from indelible.core.entry import IndexColumns, PersonalValue
from indelible.storage.base import AnchorRow, ApiKeyRow, DeliveryRow, EntryQuery, EntryRow

__all__ = [
    "ANCHOR_COLUMNS",
    "DELIVERY_COLUMNS",
    "ENTRY_COLUMNS",
    "KEY_COLUMNS",
    "anchor_row",
    "delivery_row",
    "alert_state_params",
    "delivery_values",
    "entry_row",
    "group_personal",
    "group_refs",
    "key_row",
    "key_values",
    "migrations",
    "where_clause",
]

ENTRY_COLUMNS = (
    "seq, leaf, leaf_hash, event_id, event_type, occurred_at_ms, received_at_ms, actor_id, "
    "actor_type, target_type, target_id, action, outcome, request_id, ip"
)
KEY_COLUMNS = "key_id, log_id, name, role, secret_hash, created_at_ms, created_by, revoked_at_ms"
ANCHOR_COLUMNS = "size, kind, authority, evidence, created_at_ms"
DELIVERY_COLUMNS = (
    "alert_id, sink, seq, payload, status, attempts, next_attempt_ms, last_error, "
    "created_at_ms, updated_at_ms"
)


def migrations(folder: str) -> list[tuple[int, str]]:
    """The numbered SQL scripts in the package folder ``folder``, by number."""
    found = []
    for item in (resources.files("indelible.storage") / folder).iterdir():
        if item.name.endswith(".sql"):
            found.append((int(item.name.split("_", 1)[0]), item.read_text(encoding="utf-8")))
    return sorted(found)


def entry_row(row: Sequence[Any], personal: tuple[PersonalValue, ...] = ()) -> EntryRow:
    """An entries row selected as ``ENTRY_COLUMNS``."""
    return EntryRow(
        seq=row[0],
        leaf=bytes(row[1]),
        leaf_hash=bytes(row[2]),
        index=IndexColumns(*row[3:]),
        personal=personal,
    )


def anchor_row(row: Sequence[Any]) -> AnchorRow:
    return AnchorRow(row[0], row[1], row[2], bytes(row[3]), row[4])


def delivery_row(row: Sequence[Any]) -> DeliveryRow:
    """An alert_deliveries row selected as ``DELIVERY_COLUMNS``."""
    return DeliveryRow(
        row[0], row[1], row[2], bytes(row[3]), row[4], row[5], row[6], row[7], row[8], row[9]
    )


def alert_state_params(
    log_id: int, changes: Mapping[str, str | None], deliveries: Sequence[DeliveryRow]
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The parameters of ``save_alert_state``'s three statements: the state rows to upsert,
    the state keys to delete (a change to None) and the delivery rows to insert."""
    upserts = [(log_id, key, value) for key, value in changes.items() if value is not None]
    deletes = [(log_id, key) for key, value in changes.items() if value is None]
    return upserts, deletes, [(log_id, *delivery_values(row)) for row in deliveries]


def delivery_values(row: DeliveryRow) -> tuple[Any, ...]:
    """``row`` in ``DELIVERY_COLUMNS`` order, to insert."""
    return (
        row.alert_id,
        row.sink,
        row.seq,
        row.payload,
        row.status,
        row.attempts,
        row.next_attempt_ms,
        row.last_error,
        row.created_at_ms,
        row.updated_at_ms,
    )


def key_row(row: Sequence[Any]) -> ApiKeyRow:
    return ApiKeyRow(row[0], row[1], row[2], row[3], bytes(row[4]), row[5], row[6], row[7])


def key_values(row: ApiKeyRow) -> tuple[Any, ...]:
    """``row`` in ``KEY_COLUMNS`` order, to insert."""
    return (
        row.key_id,
        row.log_id,
        row.name,
        row.role,
        row.secret_hash,
        row.created_at_ms,
        row.created_by,
        row.revoked_at_ms,
    )


def group_personal(rows: Iterable[Sequence[Any]]) -> dict[int, tuple[PersonalValue, ...]]:
    """(seq, pointer, salt, value) rows, ordered by seq and pointer, grouped by seq."""
    found: dict[int, list[PersonalValue]] = {}
    for seq, pointer, salt, value in rows:
        found.setdefault(seq, []).append(PersonalValue(pointer, bytes(salt), bytes(value)))
    return {seq: tuple(values) for seq, values in found.items()}


def group_refs(rows: Iterable[Sequence[Any]]) -> dict[int, tuple[tuple[str, str], ...]]:
    """(seq, ref_type, ref_id) rows grouped by seq, each group sorted."""
    found: dict[int, list[tuple[str, str]]] = {}
    for seq, kind, ref in rows:
        found.setdefault(seq, []).append((kind, ref))
    return {seq: tuple(sorted(refs)) for seq, refs in found.items()}


_EQUALS = (
    ("actor_id", "actor_id"),
    ("actor_type", "actor_type"),
    ("target_type", "target_type"),
    ("target_id", "target_id"),
    ("event_type", "event_type"),
    ("action", "action"),
    ("outcome", "outcome"),
    ("request_id", "request_id"),
    ("ip", "ip"),
)
_RANGES = (
    ("occurred_from_ms", "occurred_at_ms >= ?"),
    ("occurred_to_ms", "occurred_at_ms < ?"),
    ("received_from_ms", "received_at_ms >= ?"),
    ("received_to_ms", "received_at_ms < ?"),
    ("max_seq", "seq <= ?"),
)


def where_clause(log_id: int, query: EntryQuery, mark: str) -> tuple[str, tuple[Any, ...]]:
    """The WHERE clause (with its parameters) of ``query``; values are always bound.

    ``mark`` is the driver's placeholder (``?`` for sqlite3, ``%s`` for psycopg).
    """
    clauses: list[str] = ["log_id = ?"]
    params: list[Any] = [log_id]
    for attribute, column in _EQUALS:
        value = getattr(query, attribute)
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    if query.event_type_prefix is not None:
        # every type that starts with the prefix sorts in [prefix, prefix with '.' -> '/')
        clauses.append("event_type >= ? AND event_type < ?")
        params += [query.event_type_prefix, query.event_type_prefix[:-1] + "/"]
    # One record's entries: its (target_type, target_id, seq) index finds them directly. A
    # time range beside it is written ``+column`` so that no planner prefers the time index,
    # which would read every entry in the range (SQLite keeps no statistics to know better).
    one_record = query.target_type is not None and query.target_id is not None
    for attribute, clause in _RANGES:
        value = getattr(query, attribute)
        if value is not None:
            clauses.append("+" + clause if one_record and "_ms" in clause else clause)
            params.append(value)
    if query.after_seq is not None:
        clauses.append("seq < ?" if query.descending else "seq > ?")
        params.append(query.after_seq)
    if query.touching is not None:
        kind, ref = query.touching
        clauses.append(
            "seq IN (SELECT seq FROM entries WHERE log_id = ? AND target_type = ? "
            "AND target_id = ? UNION SELECT seq FROM entry_refs WHERE log_id = ? "
            "AND ref_type = ? AND ref_id = ?)"
        )
        params += [log_id, kind, ref, log_id, kind, ref]
    text = " AND ".join(clauses)
    return (text if mark == "?" else text.replace("?", mark)), tuple(params)
