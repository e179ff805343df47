"""``pg-capture install | uninstall | status | requeue``: managing the capture of one table.

Each function takes a psycopg connection to the application's database (not in autocommit)
and does all of its work in one transaction, under a transaction-level advisory lock, so two
installs never interleave and a failure leaves nothing half made.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from indelible.errors import InputError, NotFound
from indelible.service.pgcapture import triggers
from indelible.service.pgcapture.catalog import (
    FORMAT,
    SCHEMA,
    Column,
    Generation,
    TableColumn,
    TableInfo,
    change_table,
    choose_columns,
    choose_key,
    choose_target_type,
    load_generations,
    resolve_table,
    schema_exists,
)

__all__ = ["InstallResult", "install", "requeue", "status", "uninstall"]

LOCK = (0x49444C, 2)  # (classid, objid) of the advisory lock install/uninstall take
_MAX_ROLE = 63
_REJECTED_SHOWN = 20

_SCHEMA_DDL = (
    "CREATE SCHEMA IF NOT EXISTS indelible_capture",
    "CREATE TABLE IF NOT EXISTS indelible_capture.captures ("
    " id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY, relid oid NOT NULL UNIQUE,"
    " schema_name text NOT NULL, table_name text NOT NULL, target_type text NOT NULL,"
    " key_columns text[] NOT NULL, all_columns boolean NOT NULL, generation integer NOT NULL,"
    " installed_at timestamptz NOT NULL DEFAULT now(),"
    " installed_by text NOT NULL DEFAULT session_user)",
    "CREATE TABLE IF NOT EXISTS indelible_capture.generations ("
    " capture integer NOT NULL REFERENCES indelible_capture.captures ON DELETE CASCADE,"
    " generation integer NOT NULL, columns jsonb NOT NULL, key_columns text[] NOT NULL,"
    " target_type text NOT NULL, created_at timestamptz NOT NULL DEFAULT now(),"
    " PRIMARY KEY (capture, generation))",
    "CREATE TABLE IF NOT EXISTS indelible_capture.statements ("
    ' id bigint PRIMARY KEY, capture integer NOT NULL, op "char" NOT NULL,'
    " rows bigint NOT NULL, txid xid8 NOT NULL, at timestamptz NOT NULL,"
    " session_role text NOT NULL, role_name text NOT NULL, application_name text,"
    " actor_id text, actor_type text, request_id text, reason text, ip text)",
    "CREATE SEQUENCE IF NOT EXISTS indelible_capture.statement_ids",
    "CREATE TABLE IF NOT EXISTS indelible_capture.relay_roles (role_name text PRIMARY KEY)",
)
_COMMENT = f"COMMENT ON SCHEMA indelible_capture IS 'Indelible pg-capture outbox, format {FORMAT}'"


@dataclass(frozen=True)
class InstallResult:
    capture: int
    table: str
    target_type: str
    key: tuple[str, ...]
    columns: tuple[Column, ...]
    generation: int
    outcome: str  # "installed", "unchanged" (triggers recreated) or "new_generation"
    dropped_generations: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "capture": self.capture,
            "table": self.table,
            "target_type": self.target_type,
            "key": list(self.key),
            "columns": [column.to_dict() for column in self.columns],
            "generation": self.generation,
            "outcome": self.outcome,
            "dropped_generations": list(self.dropped_generations),
        }


def _lock(conn: psycopg.Connection[Any]) -> None:
    conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", LOCK)


def _check_database(conn: psycopg.Connection[Any]) -> None:
    row = conn.execute(
        "SELECT pg_encoding_to_char(encoding) FROM pg_database WHERE datname = current_database()"
    ).fetchone()
    if row and row[0] == "SQL_ASCII":
        raise InputError(
            "the database's encoding is SQL_ASCII: its text cannot be read as UTF-8 reliably; "
            "pg-capture needs a database in UTF8 (or another real encoding)"
        )


def _check_table_owner(conn: psycopg.Connection[Any], table: TableInfo) -> None:
    row = conn.execute(
        "SELECT r.rolname, pg_has_role(current_user, c.relowner, 'MEMBER')"
        " FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner WHERE c.oid = %s",
        (table.oid,),
    ).fetchone()
    if row is not None and not row[1]:
        raise InputError(
            f"{table.display} belongs to {row[0]}: install as its owner (or a superuser), "
            "who alone may create triggers on it"
        )


def _check_schema_owner(conn: psycopg.Connection[Any]) -> bool:
    """True if the schema is to be created. The trigger functions write the outbox as their
    owner, so every table must be installed by the schema's owner (or a superuser)."""
    row = conn.execute(
        "SELECT r.rolname, r.rolname = current_user"
        " OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)"
        " FROM pg_namespace n JOIN pg_roles r ON r.oid = n.nspowner WHERE n.nspname = %s",
        (SCHEMA,),
    ).fetchone()
    if row is None:
        return True
    owner, allowed = row
    if not allowed:
        raise InputError(
            f"the schema {SCHEMA} belongs to {owner}: install as {owner} (or a superuser), "
            "which the triggers write the outbox as"
        )
    return False


def install(
    conn: psycopg.Connection[Any],
    table_name: str,
    *,
    columns: Sequence[str] | None = None,
    key: Sequence[str] | None = None,
    target_type: str | None = None,
    relay_role: str | None = None,
) -> InstallResult:
    """Install (or re-install) the capture of one table; see docs/capture.md."""
    if relay_role is not None and not 0 < len(relay_role.encode()) <= _MAX_ROLE:
        raise InputError(f"--relay-role must be 1 to {_MAX_ROLE} bytes")
    with conn.transaction():
        _lock(conn)
        _check_database(conn)
        table = resolve_table(conn, table_name)
        _check_table_owner(conn, table)
        chosen = choose_columns(table, columns)
        key_index = choose_key(table, key)
        missing = [name for name in key_index.columns if name not in {c.name for c in chosen}]
        if missing:
            raise InputError(
                f"the key column {', '.join(missing)} must be among --columns: it is the "
                "record's id in every event"
            )
        tt = choose_target_type(table, target_type)
        conn.execute("SET LOCAL search_path = pg_catalog, pg_temp")
        created = _check_schema_owner(conn)
        for statement in _SCHEMA_DDL:
            conn.execute(statement)
        if created:
            conn.execute(_COMMENT)
        if relay_role is not None:
            _add_relay_role(conn, relay_role)
        result = _install_locked(conn, table, chosen, key_index.columns, tt, not columns)
        triggers.create_functions(conn, result.capture, result.generation, table, chosen, key_index)
        triggers.create_triggers(conn, result.capture, table, chosen, key_index)
        _grant_relay_roles(conn)
    return result


def _columns_json(columns: Sequence[TableColumn]) -> list[dict[str, str]]:
    return [{"name": c.name, "type": c.type, "kind": c.kind} for c in columns]


def _install_locked(
    conn: psycopg.Connection[Any],
    table: TableInfo,
    chosen: Sequence[TableColumn],
    key: tuple[str, ...],
    target_type: str,
    all_columns: bool,
) -> InstallResult:
    shape = _columns_json(chosen)
    captured = tuple(Column(c.name, c.type, c.kind) for c in chosen)
    found = conn.execute(
        "SELECT c.id, c.generation, g.columns, g.key_columns, g.target_type"
        " FROM indelible_capture.captures c JOIN indelible_capture.generations g"
        " ON g.capture = c.id AND g.generation = c.generation WHERE c.relid = %s",
        (table.oid,),
    ).fetchone()
    if found is None:
        row = conn.execute(
            "INSERT INTO indelible_capture.captures"
            " (relid, schema_name, table_name, target_type, key_columns, all_columns, generation)"
            " VALUES (%s, %s, %s, %s, %s, %s, 1) RETURNING id",
            (table.oid, table.schema_name, table.table_name, target_type, list(key), all_columns),
        ).fetchone()
        assert row is not None
        capture, generation, outcome = row[0], 1, "installed"
        dropped: tuple[int, ...] = ()
    else:
        capture, generation, old_shape, old_key, old_type = found
        dropped = _drop_drained(conn, capture, generation)
        same = (old_shape, tuple(old_key), old_type) == (shape, key, target_type)
        outcome = "unchanged" if same else "new_generation"
        generation += 0 if same else 1
        conn.execute(
            "UPDATE indelible_capture.captures SET schema_name = %s, table_name = %s,"
            " target_type = %s, key_columns = %s, all_columns = %s, generation = %s"
            " WHERE id = %s",
            (
                table.schema_name,
                table.table_name,
                target_type,
                list(key),
                all_columns,
                generation,
                capture,
            ),
        )
    if outcome != "unchanged":
        triggers.create_change_table(conn, capture, generation, chosen)
        conn.execute(
            "INSERT INTO indelible_capture.generations"
            " (capture, generation, columns, key_columns, target_type) VALUES (%s, %s, %s, %s, %s)",
            (capture, generation, Jsonb(shape), list(key), target_type),
        )
    return InstallResult(
        capture, table.display, target_type, key, captured, generation, outcome, dropped
    )


def _drop_drained(conn: psycopg.Connection[Any], capture: int, current: int) -> tuple[int, ...]:
    """Drop the capture's older generations that hold no row any more."""
    dropped = []
    rows = conn.execute(
        "SELECT generation FROM indelible_capture.generations"
        " WHERE capture = %s AND generation < %s ORDER BY generation",
        (capture, current),
    ).fetchall()
    for (generation,) in rows:
        table = change_table(capture, generation)
        left = conn.execute(sql.SQL("SELECT EXISTS (SELECT FROM {})").format(table)).fetchone()
        if left and not left[0]:
            conn.execute(sql.SQL("DROP TABLE {}").format(table))
            conn.execute(
                "DELETE FROM indelible_capture.generations WHERE capture = %s AND generation = %s",
                (capture, generation),
            )
            dropped.append(generation)
    return tuple(dropped)


def _add_relay_role(conn: psycopg.Connection[Any], role: str) -> None:
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
    if exists is None:
        raise NotFound(f"--relay-role: no role {role!r} in this cluster")
    conn.execute(
        "INSERT INTO indelible_capture.relay_roles VALUES (%s) ON CONFLICT DO NOTHING", (role,)
    )


def _grant_relay_roles(conn: psycopg.Connection[Any]) -> None:
    """What the relay needs, and no more: read the outbox, delete what was relayed, mark
    what was refused. It can never write a change."""
    roles = [r for (r,) in conn.execute("SELECT role_name FROM indelible_capture.relay_roles")]
    tables = [
        change_table(capture, generation)
        for capture, generation in conn.execute(
            "SELECT capture, generation FROM indelible_capture.generations"
        )
    ]
    for role in roles:
        grantee = sql.Identifier(role)
        for statement in (
            "GRANT USAGE ON SCHEMA indelible_capture TO {}",
            "GRANT SELECT ON indelible_capture.captures, indelible_capture.generations TO {}",
            "GRANT SELECT, DELETE ON indelible_capture.statements TO {}",
        ):
            conn.execute(sql.SQL(statement).format(grantee))
        for table in tables:
            conn.execute(
                sql.SQL("GRANT SELECT, DELETE, UPDATE (rejected_at, rejection) ON {} TO {}").format(
                    table, grantee
                )
            )


def _capture_of(conn: psycopg.Connection[Any], table_name: str) -> tuple[int, TableInfo | None]:
    """The capture of ``table_name``: by the table if it exists, else by its recorded name."""
    if not schema_exists(conn):
        raise NotFound(f"pg-capture is not installed in this database (no schema {SCHEMA})")
    try:
        table: TableInfo | None = resolve_table(conn, table_name)
    except NotFound:
        table = None
    if table is not None:
        row = conn.execute(
            "SELECT id FROM indelible_capture.captures WHERE relid = %s", (table.oid,)
        ).fetchone()
    else:
        schema_name, _, name = table_name.rpartition(".")
        row = conn.execute(
            "SELECT id FROM indelible_capture.captures WHERE table_name = %s"
            " AND (schema_name = %s OR %s = '')",
            (name, schema_name, schema_name),
        ).fetchone()
    if row is None:
        raise NotFound(f"{table_name} is not captured")
    return row[0], table


def uninstall(
    conn: psycopg.Connection[Any], table_name: str, *, force: bool = False
) -> dict[str, Any]:
    """Remove one table's capture; refuse while its outbox holds rows, unless ``force``."""
    with conn.transaction():
        _lock(conn)
        capture, table = _capture_of(conn, table_name)
        generations = [g for g in load_generations(conn) if g.capture == capture]
        held = sum(sum(_count(conn, g)[:2]) for g in generations)
        if held and not force:
            raise InputError(
                f"the outbox of {table_name} still holds {held} rows (pending or rejected): "
                "run the relay until `pg-capture status` shows none, or give --force to "
                "discard them"
            )
        triggers.drop(conn, capture, table)
        for generation in generations:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(generation.changes))
        conn.execute("DELETE FROM indelible_capture.statements WHERE capture = %s", (capture,))
        conn.execute("DELETE FROM indelible_capture.captures WHERE id = %s", (capture,))
        left = conn.execute("SELECT count(*) FROM indelible_capture.captures").fetchone()
        dropped_schema = bool(left and left[0] == 0)
        if dropped_schema:
            conn.execute("DROP SCHEMA indelible_capture CASCADE")
    return {"table": table_name, "discarded": held, "dropped_schema": dropped_schema}


def _count(conn: psycopg.Connection[Any], g: Generation) -> tuple[int, int, float | None]:
    """Pending rows, rejected rows, and the age in seconds of the oldest pending change."""
    row = conn.execute(
        sql.SQL(
            "SELECT count(*) FILTER (WHERE c.rejected_at IS NULL),"
            " count(*) FILTER (WHERE c.rejected_at IS NOT NULL),"
            " extract(epoch FROM now() - min(s.at) FILTER (WHERE c.rejected_at IS NULL))::float8"
            " FROM {} c LEFT JOIN indelible_capture.statements s ON s.id = c.stmt"
        ).format(g.changes)
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), row[2]


_TRIGGER_STATES = {
    "A": "enabled",
    "O": "enabled, but skipped under session_replication_role = replica",
    "R": "enabled only under session_replication_role = replica",
    "D": "DISABLED",
}


def status(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    """Every capture: its triggers, outbox depth, oldest pending change, rejected rows."""
    with conn.transaction():
        if not schema_exists(conn):
            return {"installed": False, "captures": []}
        generations = load_generations(conn)
        captures = {g.capture: _describe(conn, g) for g in generations if g.current}
        for g in generations:
            entry = captures[g.capture]
            pending, rejected, age = _count(conn, g)
            entry["pending"] += pending
            entry["rejected"] += rejected
            if age is not None:
                entry["oldest_pending_age_s"] = max(entry["oldest_pending_age_s"] or 0.0, age)
            entry["generations"].append(
                {
                    "generation": g.generation,
                    "current": g.current,
                    "pending": pending,
                    "rejected": rejected,
                }
            )
            if rejected:
                entry["rejected_rows"] += _rejected_rows(conn, g)
        for entry in captures.values():
            entry["rejected_rows"] = entry["rejected_rows"][:_REJECTED_SHOWN]
    return {"installed": True, "captures": list(captures.values())}


def _describe(conn: psycopg.Connection[Any], g: Generation) -> dict[str, Any]:
    """The capture whose current generation is ``g``: its triggers and what went wrong."""
    found = conn.execute(
        "SELECT c.relid, c.all_columns, r.oid IS NOT NULL FROM indelible_capture.captures c"
        " LEFT JOIN pg_class r ON r.oid = c.relid WHERE c.id = %s",
        (g.capture,),
    ).fetchone()
    assert found is not None
    relid, all_columns, exists = found
    states = {
        name.removeprefix("indelible_capture_"): _TRIGGER_STATES.get(state, state)
        for name, state in conn.execute(
            "SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = %s"
            " AND tgname LIKE 'indelible\\_capture\\_%%'",
            (relid,),
        )
    }
    problems = [f"trigger {op} is missing" for op in triggers.TRIGGERS if op not in states]
    problems += [f"trigger {op} is DISABLED" for op, s in states.items() if s == "DISABLED"]
    uncaptured: list[str] = []
    if not exists:
        problems = [f"the table {g.table} no longer exists"]
    else:
        current = {
            name: shown
            for name, shown in conn.execute(
                "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
                " WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
                (relid,),
            )
        }
        captured = {c.name for c in g.columns}
        for column in g.columns:
            if current.get(column.name) != column.type:
                problems.append(
                    f"column {column.name} was {column.type}, is now "
                    f"{current.get(column.name, 'gone')}: run pg-capture install again"
                )
        if all_columns:
            uncaptured = [name for name in current if name not in captured]
    if uncaptured:
        problems.append(
            f"columns added since install are not captured: {', '.join(uncaptured)} "
            "(run pg-capture install again)"
        )
    return {
        "table": g.table,
        "target_type": g.target_type,
        "key": list(g.key),
        "columns": [c.name for c in g.columns],
        "all_columns": all_columns,
        "triggers": states,
        "problems": problems,
        "pending": 0,
        "rejected": 0,
        "oldest_pending_age_s": None,
        "generations": [],
        "rejected_rows": [],
    }


def _rejected_rows(conn: psycopg.Connection[Any], g: Generation) -> list[dict[str, Any]]:
    rows = conn.execute(
        sql.SQL(
            "SELECT stmt, id, rejected_at, rejection FROM {} WHERE rejected_at IS NOT NULL"
            " ORDER BY stmt, id LIMIT %s"
        ).format(g.changes),
        (_REJECTED_SHOWN,),
    ).fetchall()
    return [
        {
            "generation": g.generation,
            "statement": stmt,
            "row": row_id,
            "rejected_at": at.isoformat(),
            "error": error,
        }
        for stmt, row_id, at, error in rows
    ]


def requeue(conn: psycopg.Connection[Any], table_name: str | None = None) -> dict[str, Any]:
    """Clear the rejection of every rejected row (of one table, or all): the relay sends them
    again, e.g. after the limit that refused them was raised. They are never lost meanwhile."""
    with conn.transaction():
        wanted = _capture_of(conn, table_name)[0] if table_name else None
        count = 0
        for g in load_generations(conn):
            if wanted is None or g.capture == wanted:
                cursor = conn.execute(
                    sql.SQL(
                        "UPDATE {} SET rejected_at = NULL, rejection = NULL"
                        " WHERE rejected_at IS NOT NULL"
                    ).format(g.changes)
                )
                count += cursor.rowcount
        conn.execute("SELECT pg_notify('indelible_capture', '')")
    return {"requeued": count}
