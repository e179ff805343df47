"""What pg-capture keeps in the application's database, and how it reads the table captured.

Everything lives in the schema ``indelible_capture``:

- ``captures`` — one row per captured table: its name, target type, key, whether every column
  is captured, and the current *generation*;
- ``generations`` — the captured columns of each generation (name, type, kind, in table order).
  Installing again with another column set, or after the table's column types changed, starts
  a new generation with a change table of the new shape; the old one drains through the relay;
- ``changes_<capture>_<generation>`` — the outbox proper: one row per changed row, the before
  (``b1…bn``) and after (``a1…an``) values of the captured columns in their own types, the
  statement it belongs to, and ``rejected_at`` / ``rejection`` once Indelible refused it;
- ``statements`` — one row per statement that changed captured rows: operation, transaction
  id, statement time, database users, ``application_name`` and the ``indelible.*`` context;
- ``statement_ids`` — the sequence numbering statements; ``relay_roles`` — roles granted what
  the relay needs, re-granted on every new generation.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from indelible.errors import InputError, NotFound
from indelible.service.pgcapture.values import kind_of

__all__ = [
    "CHANNEL",
    "SCHEMA",
    "Column",
    "Generation",
    "TableInfo",
    "load_generations",
    "resolve_table",
    "schema_exists",
]

SCHEMA = "indelible_capture"
CHANNEL = "indelible_capture"
FORMAT = 1
MAX_COLUMNS = 798  # 2 n + 4 columns per change table, at most 1,600 in PostgreSQL
_TOKEN = re.compile(r"[a-z][a-z0-9_]{0,63}")
_MAX_TABLE_TEXT = 400


@dataclass(frozen=True, slots=True)
class Column:
    """A captured column: its name, its type as PostgreSQL writes it, and its JSON kind."""

    name: str
    type: str
    kind: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "type": self.type, "kind": self.kind}


@dataclass(frozen=True, slots=True)
class Generation:
    """One shape of one captured table's outbox, as the relay reads it."""

    capture: int
    generation: int
    schema_name: str
    table_name: str
    target_type: str
    key: tuple[str, ...]
    columns: tuple[Column, ...]
    current: bool

    @property
    def table(self) -> str:
        """``schema.table`` for people (the parts are not quoted)."""
        return f"{self.schema_name}.{self.table_name}"

    @property
    def changes(self) -> sql.Identifier:
        return change_table(self.capture, self.generation)

    @property
    def key_slots(self) -> tuple[int, ...]:
        names = [column.name for column in self.columns]
        return tuple(names.index(name) for name in self.key)


def change_table(capture: int, generation: int) -> sql.Identifier:
    return sql.Identifier(SCHEMA, f"changes_{capture}_{generation}")


def schema_exists(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{SCHEMA}.generations",)).fetchone()
    return bool(row and row[0])


def load_generations(conn: psycopg.Connection[Any]) -> list[Generation]:
    """Every generation of every capture, oldest first; NotFound when nothing is installed."""
    if not schema_exists(conn):
        raise NotFound(f"pg-capture is not installed in this database (no schema {SCHEMA})")
    rows = conn.execute(
        sql.SQL(
            "SELECT c.id, g.generation, c.schema_name, c.table_name, g.target_type,"
            " g.key_columns, g.columns, g.generation = c.generation"
            " FROM {}.captures c JOIN {}.generations g ON g.capture = c.id"
            " ORDER BY c.id, g.generation"
        ).format(sql.Identifier(SCHEMA), sql.Identifier(SCHEMA))
    ).fetchall()
    return [
        Generation(
            capture=row[0],
            generation=row[1],
            schema_name=row[2],
            table_name=row[3],
            target_type=row[4],
            key=tuple(row[5]),
            columns=tuple(Column(c["name"], c["type"], c["kind"]) for c in row[6]),
            current=row[7],
        )
        for row in rows
    ]


# -- the table captured ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TableColumn:
    name: str
    type: str  # format_type of the column
    storage_type: str  # format_type of its base type (domains resolved), for the change table
    kind: str
    not_null: bool


@dataclass(frozen=True, slots=True)
class KeyIndex:
    columns: tuple[str, ...]
    operator_schemas: tuple[str, ...]  # where each column's btree "=" lives
    primary: bool
    usable: str | None  # None, or why it cannot serve as the capture key


@dataclass(frozen=True, slots=True)
class TableInfo:
    oid: int
    schema_name: str
    table_name: str
    columns: tuple[TableColumn, ...]
    keys: tuple[KeyIndex, ...]

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema_name, self.table_name)

    @property
    def display(self) -> str:
        return f"{self.schema_name}.{self.table_name}"

    def column(self, name: str) -> TableColumn:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)


def resolve_table(conn: psycopg.Connection[Any], text: str) -> TableInfo:
    """The regular table ``text`` names (``schema.table`` or a name on the search_path)."""
    if not text or len(text) > _MAX_TABLE_TEXT:
        raise InputError(f"--table must be 1 to {_MAX_TABLE_TEXT} characters")
    try:
        with conn.transaction():
            found = conn.execute(
                "SELECT c.oid, n.nspname, c.relname, c.relkind, c.relispartition,"
                " EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhparent = c.oid"
                " OR i.inhrelid = c.oid)"
                " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE c.oid = to_regclass(%s)",
                (text,),
            ).fetchone()
    except psycopg.Error as exc:
        raise InputError(f"--table {text!r} is not a table name: {_first_line(exc)}") from None
    if found is None:
        raise NotFound(f"no table {text!r} in this database (give schema.table)")
    oid, schema_name, table_name, relkind, is_partition, inherits = found
    display = f"{schema_name}.{table_name}"
    if relkind == "p" or is_partition:
        raise InputError(f"{display} is partitioned or a partition: not supported yet")
    if relkind != "r":
        raise InputError(f"{display} is not a plain table (relkind {relkind!r})")
    if inherits:
        raise InputError(f"{display} takes part in table inheritance: not supported")
    return TableInfo(oid, schema_name, table_name, _columns(conn, oid), _keys(conn, oid))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


_COLUMNS = """
WITH RECURSIVE cols AS (
    SELECT a.attnum, a.attname, a.attnotnull, format_type(a.atttypid, a.atttypmod) AS shown,
           a.atttypid AS base, a.atttypmod AS typmod, 0 AS depth
    FROM pg_attribute a
    WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped
  UNION ALL
    SELECT c.attnum, c.attname, c.attnotnull, c.shown, t.typbasetype,
           CASE WHEN t.typtypmod <> -1 THEN t.typtypmod ELSE c.typmod END, c.depth + 1
    FROM cols c JOIN pg_type t ON t.oid = c.base
    WHERE t.typtype = 'd'
)
SELECT DISTINCT ON (c.attnum) c.attname, c.shown, format_type(c.base, c.typmod), t.typname,
       n.nspname, c.attnotnull
FROM cols c JOIN pg_type t ON t.oid = c.base JOIN pg_namespace n ON n.oid = t.typnamespace
ORDER BY c.attnum, c.depth DESC
"""


def _columns(conn: psycopg.Connection[Any], oid: int) -> tuple[TableColumn, ...]:
    rows = conn.execute(_COLUMNS, (oid,)).fetchall()
    return tuple(
        TableColumn(name, shown, storage, kind_of(base, base_schema), not_null)
        for name, shown, storage, base, base_schema, not_null in rows
    )


_KEYS = """
SELECT i.indisprimary, i.indimmediate,
       array_agg(a.attname::text ORDER BY k.ord),
       array_agg(coalesce(ns.nspname::text, '') ORDER BY k.ord),
       bool_and(coalesce(o.oprname = '=', false)),
       bool_and(a.attnotnull)
FROM pg_index i
CROSS JOIN LATERAL unnest(i.indkey::int2[], i.indclass::oid[]) WITH ORDINALITY
     AS k(attnum, opclass, ord)
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
LEFT JOIN pg_opclass oc ON oc.oid = k.opclass
LEFT JOIN pg_amop m ON m.amopfamily = oc.opcfamily AND m.amoplefttype = oc.opcintype
     AND m.amoprighttype = oc.opcintype AND m.amopstrategy = 3
LEFT JOIN pg_operator o ON o.oid = m.amopopr
LEFT JOIN pg_namespace ns ON ns.oid = o.oprnamespace
WHERE i.indrelid = %s AND i.indisunique AND i.indisvalid AND i.indpred IS NULL
  AND i.indexprs IS NULL AND k.ord <= i.indnkeyatts
GROUP BY i.indexrelid, i.indisprimary, i.indimmediate
ORDER BY i.indisprimary DESC, i.indexrelid
"""


def _keys(conn: psycopg.Connection[Any], oid: int) -> tuple[KeyIndex, ...]:
    keys = []
    for primary, immediate, columns, schemas, equality, not_null in conn.execute(_KEYS, (oid,)):
        usable = None
        if not immediate:
            usable = "its constraint is deferrable"
        elif not not_null:
            usable = "a column of it may be NULL"
        elif not equality:
            usable = "a column of it has no btree '=' operator"
        keys.append(KeyIndex(tuple(columns), tuple(schemas), primary, usable))
    return tuple(keys)


def choose_key(table: TableInfo, wanted: Sequence[str] | None) -> KeyIndex:
    """The primary key, or the unique key whose columns are exactly ``wanted``."""
    if not wanted:
        for key in table.keys:
            if key.primary:
                if key.usable is not None:
                    raise InputError(
                        f"the primary key of {table.display} cannot be used: "
                        f"{key.usable}; give --key"
                    )
                return key
        raise InputError(
            f"{table.display} has no primary key: give --key naming the columns of a unique, "
            "not-null, non-deferrable key"
        )
    names = _names("--key", wanted)
    unknown = [name for name in names if name not in {c.name for c in table.columns}]
    if unknown:
        raise InputError(f"--key: {table.display} has no column {', '.join(unknown)}")
    for key in table.keys:
        if set(key.columns) == set(names) and len(key.columns) == len(names):
            if key.usable is not None:
                raise InputError(f"--key {','.join(names)} cannot be used: {key.usable}")
            order = [key.columns.index(name) for name in names]
            return KeyIndex(
                tuple(names),
                tuple(key.operator_schemas[i] for i in order),
                key.primary,
                None,
            )
    raise InputError(
        f"--key {','.join(names)}: {table.display} has no unique index on exactly these "
        "columns (without a WHERE clause or expressions); the capture needs one to pair the "
        "rows before and after an update"
    )


def choose_columns(table: TableInfo, wanted: Sequence[str] | None) -> tuple[TableColumn, ...]:
    """The captured columns, in table order: every column, or exactly those ``wanted``."""
    if not wanted:
        chosen = table.columns
    else:
        names = set(_names("--columns", wanted))
        known = {column.name for column in table.columns}
        unknown = sorted(names - known)
        if unknown:
            raise InputError(
                f"--columns: {table.display} has no column {', '.join(unknown)} "
                f"(it has {', '.join(c.name for c in table.columns)})"
            )
        chosen = tuple(column for column in table.columns if column.name in names)
    if len(chosen) > MAX_COLUMNS:
        raise InputError(f"at most {MAX_COLUMNS} columns can be captured, not {len(chosen)}")
    return chosen


def _names(option: str, names: Sequence[str]) -> list[str]:
    cleaned = [name.strip() for name in names]
    if any(not name or len(name.encode()) > 63 for name in cleaned):
        raise InputError(f"{option}: each column name must be 1 to 63 bytes")
    if len(set(cleaned)) != len(cleaned):
        raise InputError(f"{option}: a column is named twice")
    return cleaned


def choose_target_type(table: TableInfo, wanted: str | None) -> str:
    target_type = wanted if wanted is not None else table.table_name
    if _TOKEN.fullmatch(target_type) is None:
        hint = "" if wanted is not None else f" ({table.table_name!r} is not one; give it)"
        raise InputError(
            f"--target-type must be lowercase a-z, 0-9 and _, starting with a letter, at most "
            f"64 characters{hint}"
        )
    return target_type
