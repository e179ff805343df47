"""The SQL of an entry query, shared by the stores (values are always bound, never inlined)."""

from __future__ import annotations

from typing import Any

from indelible.storage.base import EntryQuery

__all__ = ["where_clause"]

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
    for attribute, clause in _RANGES:
        value = getattr(query, attribute)
        if value is not None:
            clauses.append(clause)
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
