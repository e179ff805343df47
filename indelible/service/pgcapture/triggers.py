"""The SQL pg-capture installs on a captured table: its change table, functions and triggers.

Statement-level triggers with transition tables do the work: one ``INSERT … SELECT`` per
statement copies the before/after values of the captured columns (in their own types, nothing
converted) into the change table, and one row into ``statements`` holds the statement's
context. An UPDATE pairs each row before and after by the key; rows whose values of the
captured columns are byte-for-byte the same (``record_image_eq``) are left out, so an UPDATE
that changes none of them records nothing.

A row whose *key* changed cannot be paired by it. A row-level trigger, whose ``WHEN`` holds
only for such rows (so costs nothing otherwise), records those rows itself, from OLD and NEW,
and notes the statement's number in a transaction-local setting; the statement trigger then
pairs the remaining rows by key, leaving out the keys the moved rows had and took. That
``WHEN`` also names every captured column, which makes PostgreSQL refuse to drop one, or
change its type, while the capture is installed (instead of the capture failing at the next
write): run ``pg-capture install`` again first.

Every function is ``SECURITY DEFINER`` (owned by whoever installs, normally the table's owner)
with ``search_path`` pinned to ``pg_catalog, pg_temp``, so application roles need no
privilege on the outbox and cannot write to it; trigger functions cannot be called directly.
SQL is composed with :mod:`psycopg.sql` only: identifiers are quoted by it, and each body
is passed to ``CREATE FUNCTION`` as a string literal.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

from indelible.service.pgcapture.catalog import (
    SCHEMA,
    KeyIndex,
    TableColumn,
    TableInfo,
    change_table,
)

__all__ = ["TRIGGERS", "create_change_table", "create_functions", "create_triggers", "drop"]

TRIGGERS = ("insert", "update", "delete", "truncate", "moved")
_OPS = {"insert": "I", "update": "U", "delete": "D", "truncate": "T"}


def trigger_name(op: str) -> sql.Identifier:
    return sql.Identifier(f"indelible_capture_{op}")


def function_name(capture: int, op: str) -> sql.Identifier:
    return sql.Identifier(SCHEMA, f"capture_{capture}_{op}")


def moved_setting(capture: int) -> str:
    return f"indelible_capture.moved_{capture}"


def _slots(prefix: str, count: int) -> sql.Composed:
    return sql.SQL(", ").join(sql.Identifier(f"{prefix}{i}") for i in range(1, count + 1))


def _values(alias: str, columns: Sequence[TableColumn]) -> sql.Composed:
    return sql.SQL(", ").join(
        sql.SQL("{}.{}").format(sql.SQL(alias), sql.Identifier(c.name)) for c in columns
    )


def create_change_table(
    conn: psycopg.Connection[Any], capture: int, generation: int, columns: Sequence[TableColumn]
) -> None:
    """``changes_<capture>_<generation>``: base types, no constraints but the key (stmt, id)."""
    defs = [
        sql.SQL("{} {}").format(sql.Identifier(f"{side}{i}"), sql.SQL(column.storage_type))
        for side in ("b", "a")
        for i, column in enumerate(columns, 1)
    ]  # storage_type is format_type() output from the catalog: PostgreSQL's own quoting
    conn.execute(
        sql.SQL(
            "CREATE TABLE {} (stmt bigint NOT NULL,"
            " id bigint GENERATED ALWAYS AS IDENTITY, {},"
            " rejected_at timestamptz, rejection text, PRIMARY KEY (stmt, id))"
        ).format(change_table(capture, generation), sql.SQL(", ").join(defs))
    )


_STATEMENT_ROW = """
    INSERT INTO indelible_capture.statements
        (id, capture, op, rows, txid, at, session_role, role_name, application_name,
         actor_id, actor_type, request_id, reason, ip)
    VALUES (s, {capture}, {op}, k, pg_current_xact_id(), statement_timestamp(), session_user,
        CASE current_setting('role') WHEN 'none' THEN session_user::text
             ELSE current_setting('role') END,
        current_setting('application_name'),
        NULLIF(current_setting('indelible.actor_id', true), ''),
        NULLIF(current_setting('indelible.actor_type', true), ''),
        NULLIF(current_setting('indelible.request_id', true), ''),
        NULLIF(current_setting('indelible.reason', true), ''),
        NULLIF(current_setting('indelible.ip', true), ''));
    PERFORM pg_notify('indelible_capture', '');"""

_COPY = """
DECLARE
    s bigint := nextval('indelible_capture.statement_ids');
    k bigint;
BEGIN
    INSERT INTO {changes} (stmt, {slots}) SELECT s, {values} FROM {source};
    GET DIAGNOSTICS k = ROW_COUNT;
    IF k > 0 THEN {statement_row}
    END IF;
    RETURN NULL;
END"""

_UPDATE = """
DECLARE
    moved text := current_setting({setting}, true);
    s bigint;
    k bigint := 0;
    j bigint;
BEGIN
    IF moved IS NULL OR moved = '' THEN
        s := nextval('indelible_capture.statement_ids');
        INSERT INTO {changes} (stmt, {b_slots}, {a_slots})
        SELECT s, {old}, {new} FROM indelible_old o JOIN indelible_new n ON {pair}
        WHERE NOT record_image_eq(ROW({old}), ROW({new}));
        GET DIAGNOSTICS k = ROW_COUNT;
    ELSE
        s := moved::bigint;
        PERFORM set_config({setting}, '', true);
        SELECT count(*) INTO k FROM {changes} WHERE stmt = s;
        INSERT INTO {changes} (stmt, {b_slots}, {a_slots})
        SELECT s, {old}, {new} FROM indelible_old o JOIN indelible_new n ON {pair}
        WHERE NOT record_image_eq(ROW({old}), ROW({new}))
          AND NOT EXISTS (SELECT FROM {changes} m WHERE m.stmt = s AND {moved_from})
          AND NOT EXISTS (SELECT FROM {changes} m WHERE m.stmt = s AND {moved_to});
        GET DIAGNOSTICS j = ROW_COUNT;
        k := k + j;
    END IF;
    IF k > 0 THEN {statement_row}
    END IF;
    RETURN NULL;
END"""

_MOVED = """
DECLARE
    moved text := current_setting({setting}, true);
    s bigint;
BEGIN
    IF moved IS NULL OR moved = '' THEN
        s := nextval('indelible_capture.statement_ids');
        PERFORM set_config({setting}, s::text, true);
    ELSE
        s := moved::bigint;
    END IF;
    INSERT INTO {changes} (stmt, {b_slots}, {a_slots}) VALUES (s, {old}, {new});
    RETURN NULL;
END"""


def _equal(left: sql.Composable, right: sql.Composable, schema: str) -> sql.Composed:
    """``left = right`` with the key's own btree operator, whatever the search_path."""
    return sql.SQL("{} OPERATOR({}.=) {}").format(left, sql.Identifier(schema), right)


def _key_match(
    key: KeyIndex, slot_of: dict[str, int], left: str, right: str, slot_prefix: str | None
) -> sql.Composed:
    parts = []
    for name, schema in zip(key.columns, key.operator_schemas, strict=True):
        target = (
            sql.SQL("{}.{}").format(sql.SQL(left), sql.Identifier(f"{slot_prefix}{slot_of[name]}"))
            if slot_prefix
            else sql.SQL("{}.{}").format(sql.SQL(left), sql.Identifier(name))
        )
        parts.append(
            _equal(target, sql.SQL("{}.{}").format(sql.SQL(right), sql.Identifier(name)), schema)
        )
    return sql.SQL(" AND ").join(parts)


def _function(conn: psycopg.Connection[Any], name: sql.Identifier, body: sql.Composed) -> None:
    conn.execute(
        sql.SQL(
            "CREATE OR REPLACE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql"
            " SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS {}"
        ).format(name, sql.Literal(body.as_string(conn)))
    )
    conn.execute(sql.SQL("REVOKE ALL ON FUNCTION {}() FROM PUBLIC").format(name))


def create_functions(
    conn: psycopg.Connection[Any],
    capture: int,
    generation: int,
    table: TableInfo,
    columns: Sequence[TableColumn],
    key: KeyIndex,
) -> None:
    changes = change_table(capture, generation)
    count = len(columns)
    b_slots, a_slots = _slots("b", count), _slots("a", count)
    setting = sql.Literal(moved_setting(capture))

    def statement_row(op: str) -> sql.Composed:
        return sql.SQL(_STATEMENT_ROW).format(capture=sql.Literal(capture), op=sql.Literal(op))

    for op, slots, alias, source in (
        ("insert", a_slots, "n", sql.SQL("indelible_new n")),
        ("delete", b_slots, "o", sql.SQL("indelible_old o")),
        ("truncate", b_slots, "t", sql.SQL("ONLY {} t").format(table.ident)),
    ):
        body = sql.SQL(_COPY).format(
            changes=changes,
            slots=slots,
            values=_values(alias, columns),
            source=source,
            statement_row=statement_row(_OPS[op]),
        )
        _function(conn, function_name(capture, op), body)
    slot_of = {column.name: i for i, column in enumerate(columns, 1)}
    update = sql.SQL(_UPDATE).format(
        setting=setting,
        changes=changes,
        b_slots=b_slots,
        a_slots=a_slots,
        old=_values("o", columns),
        new=_values("n", columns),
        pair=_key_match(key, slot_of, "n", "o", None),
        moved_from=_key_match(key, slot_of, "m", "o", "b"),
        moved_to=_key_match(key, slot_of, "m", "n", "a"),
        statement_row=statement_row("U"),
    )
    _function(conn, function_name(capture, "update"), update)
    moved = sql.SQL(_MOVED).format(
        setting=setting,
        changes=changes,
        b_slots=b_slots,
        a_slots=a_slots,
        old=_values("OLD", columns),
        new=_values("NEW", columns),
    )
    _function(conn, function_name(capture, "moved"), moved)


def create_triggers(
    conn: psycopg.Connection[Any],
    capture: int,
    table: TableInfo,
    columns: Sequence[TableColumn],
    key: KeyIndex,
) -> None:
    """(Re)create the five triggers, enabled ALWAYS (so ``session_replication_role`` does not
    skip them)."""
    drop_triggers(conn, table)
    fn = {op: function_name(capture, op) for op in TRIGGERS}
    t = table.ident
    statements = [
        sql.SQL(
            "CREATE TRIGGER {} AFTER INSERT ON {} REFERENCING NEW TABLE AS indelible_new"
            " FOR EACH STATEMENT EXECUTE FUNCTION {}()"
        ).format(trigger_name("insert"), t, fn["insert"]),
        sql.SQL(
            "CREATE TRIGGER {} AFTER UPDATE ON {} REFERENCING OLD TABLE AS indelible_old"
            " NEW TABLE AS indelible_new FOR EACH STATEMENT EXECUTE FUNCTION {}()"
        ).format(trigger_name("update"), t, fn["update"]),
        sql.SQL(
            "CREATE TRIGGER {} AFTER DELETE ON {} REFERENCING OLD TABLE AS indelible_old"
            " FOR EACH STATEMENT EXECUTE FUNCTION {}()"
        ).format(trigger_name("delete"), t, fn["delete"]),
        sql.SQL(
            "CREATE TRIGGER {} BEFORE TRUNCATE ON {} FOR EACH STATEMENT EXECUTE FUNCTION {}()"
        ).format(trigger_name("truncate"), t, fn["truncate"]),
        sql.SQL(
            "CREATE TRIGGER {} AFTER UPDATE ON {} FOR EACH ROW WHEN ({}) EXECUTE FUNCTION {}()"
        ).format(trigger_name("moved"), t, _moved_when(columns, key), fn["moved"]),
    ]
    for statement in statements:
        conn.execute(statement)
    for op in TRIGGERS:
        conn.execute(sql.SQL("ALTER TABLE {} ENABLE ALWAYS TRIGGER {}").format(t, trigger_name(op)))


def _moved_when(columns: Sequence[TableColumn], key: KeyIndex) -> sql.Composed:
    """True for a row whose key changed. The second term is always true and folded away
    when the trigger runs; it is there so that every captured column is a dependency."""
    changed = sql.SQL(" OR ").join(
        sql.SQL("NOT ({})").format(
            _equal(
                sql.SQL("OLD.{}").format(sql.Identifier(name)),
                sql.SQL("NEW.{}").format(sql.Identifier(name)),
                schema,
            )
        )
        for name, schema in zip(key.columns, key.operator_schemas, strict=True)
    )
    return sql.SQL("({}) AND (ROW({}) IS NULL OR true)").format(changed, _values("NEW", columns))


def drop_triggers(conn: psycopg.Connection[Any], table: TableInfo) -> None:
    for op in TRIGGERS:
        conn.execute(
            sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(trigger_name(op), table.ident)
        )


def drop(conn: psycopg.Connection[Any], capture: int, table: TableInfo | None) -> None:
    """Drop a capture's triggers (when its table still exists) and functions."""
    if table is not None:
        drop_triggers(conn, table)
    for op in TRIGGERS:
        conn.execute(sql.SQL("DROP FUNCTION IF EXISTS {}()").format(function_name(capture, op)))
