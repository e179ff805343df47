"""pg-capture's cost on the application's writes, side by side in one run on a real server.

One figure: a 10,000-row ``UPDATE invoices SET status = …, amount_cents = amount_cents + 1``
(statement and commit, ``synchronous_commit=on``), on an 8-column table of 10,000 rows, with

- **no trigger** (the bare UPDATE);
- **Indelible capture**: ``pg-capture install`` (statement-level triggers, transition tables,
  one ``INSERT … SELECT`` into the outbox per statement), every column captured;
- **hand-written row copy**: the usual do-it-yourself audit trigger, ``FOR EACH ROW``
  ``INSERT INTO audit_copy SELECT OLD.*``;
- **row-level capture**: the same outbox written ``FOR EACH ROW`` (one INSERT per row, the
  statement's context once), the design the statement-level one was chosen over.

Each run recreates the table (and the capture) from scratch, vacuums it and checkpoints, then
times the UPDATE; the subjects take turns, and the figure is the median of 11 runs (3 with
``--quick``). The capture's outbox is checked to hold exactly 10,000 change rows after each of
its runs. The server is ``INDELIBLE_BENCH_PG`` (a superuser URL), else the local one at
127.0.0.1:5432; the work happens in a database of its own, dropped at the end. The row-level
variant numbers its statement with a shortcut (``currval`` + 1) good enough for timing only.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import time
from collections.abc import Callable

import psycopg
from psycopg import sql
from rich.console import Console

from bench.measure import Row
from indelible.service.pgcapture import install

__all__ = ["capture_rows"]

ADMIN = os.environ.get("INDELIBLE_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
ROWS = 10_000
GOAL = 2.0  # capture ÷ no trigger
_TABLE = """
CREATE TABLE invoices (
    id bigint PRIMARY KEY, customer text NOT NULL, status text NOT NULL,
    amount_cents bigint NOT NULL, currency text NOT NULL, due_on date,
    updated_at timestamptz NOT NULL, notes text
)"""
_FILL = """
INSERT INTO invoices SELECT g, 'cust-' || (g %% 500), 'open', g * 7, 'EUR',
    date '2026-01-01' + g %% 90, now(), 'note ' || g FROM generate_series(1, %s) g"""
_UPDATE = "UPDATE invoices SET status = 'paid', amount_cents = amount_cents + 1"
_COLUMNS = ("id", "customer", "status", "amount_cents", "currency", "due_on", "updated_at",
            "notes")  # fmt: skip

_ROW_COPY = (
    "CREATE TABLE audit_copy (LIKE invoices)",
    "CREATE FUNCTION audit_copy() RETURNS trigger LANGUAGE plpgsql AS $$"
    " BEGIN INSERT INTO audit_copy SELECT OLD.*; RETURN NULL; END $$",
    "CREATE TRIGGER audit_copy AFTER UPDATE ON invoices FOR EACH ROW EXECUTE FUNCTION audit_copy()",
)


def _row_level() -> tuple[str, ...]:
    """The capture's outbox, written one row at a time; the statement row once."""
    old = ", ".join(f"OLD.{c}" for c in _COLUMNS)
    new = ", ".join(f"NEW.{c}" for c in _COLUMNS)
    slots = ", ".join([f"b{i}" for i in range(1, 9)] + [f"a{i}" for i in range(1, 9)])
    return (
        "CREATE SEQUENCE row_stmt",
        "CREATE TABLE row_statements (id bigint PRIMARY KEY, txid xid8, at timestamptz,"
        " session_role text, actor_id text)",
        "CREATE TABLE row_changes AS SELECT 0::bigint AS stmt, "
        + ", ".join(f"{c} AS b{i}" for i, c in enumerate(_COLUMNS, 1))
        + ", "
        + ", ".join(f"{c} AS a{i}" for i, c in enumerate(_COLUMNS, 1))
        + " FROM invoices WITH NO DATA",
        "ALTER TABLE row_changes ADD COLUMN id bigint GENERATED ALWAYS AS IDENTITY,"
        " ADD PRIMARY KEY (stmt, id)",
        "CREATE FUNCTION row_stmt() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        " INSERT INTO row_statements VALUES (nextval('row_stmt'), pg_current_xact_id(),"
        " statement_timestamp(), session_user,"
        " NULLIF(current_setting('indelible.actor_id', true), '')); RETURN NULL; END $$",
        "CREATE FUNCTION row_change() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        f" INSERT INTO row_changes (stmt, {slots}) VALUES (currval('row_stmt') + 1, {old}, {new});"
        " RETURN NULL; END $$",
        "CREATE TRIGGER row_change AFTER UPDATE ON invoices FOR EACH ROW"
        f" WHEN (NOT record_image_eq(ROW({old}), ROW({new}))) EXECUTE FUNCTION row_change()",
        "CREATE TRIGGER row_stmt AFTER UPDATE ON invoices FOR EACH STATEMENT"
        " EXECUTE FUNCTION row_stmt()",
        "SELECT nextval('row_stmt')",
    )


def _reset(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    conn.execute("DROP SCHEMA IF EXISTS indelible_capture CASCADE")
    conn.execute("DROP TABLE IF EXISTS invoices, audit_copy, row_changes, row_statements CASCADE")
    conn.execute("DROP FUNCTION IF EXISTS audit_copy, row_change, row_stmt CASCADE")
    conn.execute("DROP SEQUENCE IF EXISTS row_stmt")
    conn.execute(_TABLE)
    conn.execute(_FILL, (ROWS,))


def _capture(dsn: str) -> Callable[[psycopg.Connection[tuple[object, ...]]], None]:
    def setup(conn: psycopg.Connection[tuple[object, ...]]) -> None:
        with psycopg.connect(dsn) as installing:
            install(installing, "public.invoices", target_type="invoice")

    return setup


def _statements(*ddl: str) -> Callable[[psycopg.Connection[tuple[object, ...]]], None]:
    def setup(conn: psycopg.Connection[tuple[object, ...]]) -> None:
        for statement in ddl:
            conn.execute(statement)

    return setup


def _time_update(conn: psycopg.Connection[tuple[object, ...]]) -> float:
    conn.execute("VACUUM ANALYZE invoices")
    conn.execute("CHECKPOINT")
    started = time.perf_counter()
    conn.execute(_UPDATE)  # autocommit: the statement and its durable commit
    return (time.perf_counter() - started) * 1000


def _measure(dsn: str, runs: int, console: Console) -> dict[str, float]:
    subjects: dict[str, Callable[[psycopg.Connection[tuple[object, ...]]], None]] = {
        "no trigger": _statements(),
        "Indelible capture": _capture(dsn),
        "hand-written row copy": _statements(*_ROW_COPY),
        "row-level capture": _statements(*_row_level()),
    }
    samples: dict[str, list[float]] = {name: [] for name in subjects}
    names = list(subjects)
    with psycopg.connect(dsn, autocommit=True) as conn:
        for run in range(runs):
            for name in names[run % len(names) :] + names[: run % len(names)]:
                _reset(conn)
                subjects[name](conn)
                samples[name].append(_time_update(conn))
                if name == "Indelible capture":
                    held = conn.execute("SELECT count(*) FROM indelible_capture.changes_1_1")
                    count = held.fetchone()
                    if count != (ROWS,):
                        raise RuntimeError(f"the capture recorded {count} rows, not {ROWS}")
    for name, values in samples.items():
        console.log(
            f"{ROWS:,}-row UPDATE, {name}: median {statistics.median(values):.1f} ms "
            f"({', '.join(f'{v:.0f}' for v in values)})"
        )
    return {name: statistics.median(values) for name, values in samples.items()}


def capture_rows(args: argparse.Namespace, console: Console) -> list[Row]:
    """Rows of the side-by-side table: Indelible capture ÷ each alternative, in ms."""
    try:
        with psycopg.connect(ADMIN, autocommit=True, connect_timeout=3) as conn:
            name = f"indelible_capture_bench_{secrets.token_hex(4)}"
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.Error as exc:
        console.log(f"[red]capture figures skipped: no server at {ADMIN}: {exc}")
        return []
    info = psycopg.conninfo.conninfo_to_dict(ADMIN)
    info["dbname"] = name
    dsn = psycopg.conninfo.make_conninfo(**info)  # type: ignore[arg-type]
    try:
        medians = _measure(dsn, 3 if args.quick else 11, console)
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
    ours = medians["Indelible capture"]
    ratio = ours / medians["no trigger"]
    verdict = "PASS" if ratio <= GOAL else "MISS"
    console.log(f"capture ÷ no trigger = {ratio:.2f}x (goal ≤ {GOAL:.0f}x): {verdict}")
    metric = f"{ROWS:,}-row UPDATE + commit, capture triggers"
    return [
        Row(metric, "ms", name, medians[name], ours, False)
        for name in ("no trigger", "hand-written row copy", "row-level capture")
    ]


def main() -> None:
    from bench.measure import print_table

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="3 runs instead of 11")
    args = parser.parse_args()
    console = Console()
    print_table(capture_rows(args, console), title="pg-capture: cost on the application's writes")


if __name__ == "__main__":
    main()
