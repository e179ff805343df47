"""pg-capture against a real PostgreSQL and a live Indelible: what the triggers record and what
the events look like, checked through the HTTP API (GET /v1/events)."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any

import psycopg
import pytest

from indelible.core.timestamps import format_timestamp
from tests.conftest import run_cli
from tests.service.conftest import App, Log, relaying, wait_drained

INVOICES = """
CREATE TABLE invoices (
    id bigint PRIMARY KEY,
    customer text NOT NULL,
    status text NOT NULL,
    amount_cents bigint NOT NULL,
    card_token text
)"""
UUID8 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def install(app: App, table: str, *args: str) -> dict[str, Any]:
    done = run_cli(
        "pg-capture", "install", "--dsn", app.owner_url, "--table", table,
        "--relay-role", app.relay_role, "--json", *args,
    )  # fmt: skip
    assert done.code == 0, done.stdout + done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def change(conn: psycopg.Connection[Any], dml: str, *params: Any) -> tuple[str, int]:
    """Run one data-modifying statement; its statement time (as occurred_at) and txid."""
    row = conn.execute(
        f"WITH change AS ({dml} RETURNING 1) SELECT"
        " floor(extract(epoch FROM statement_timestamp()) * 1000)::bigint,"
        " pg_current_xact_id()::text::bigint, (SELECT count(*) FROM change)",
        params,
    ).fetchone()
    assert row is not None
    return format_timestamp(row[0]), row[1]


def without_ids(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for event in events:
        assert UUID8.fullmatch(event["event_id"]), event["event_id"]
    return [{k: v for k, v in event.items() if k != "event_id"} for event in events]


def test_insert_update_delete_with_and_without_application_context(
    app_db: App, capture_log: Log
) -> None:
    app_db.create(INVOICES, "invoices")
    installed = install(
        app_db, "public.invoices", "--columns", "id,customer,status,amount_cents",
        "--target-type", "invoice",
    )  # fmt: skip
    assert installed["outcome"] == "installed" and installed["key"] == ["id"]
    role = app_db.app_role
    with psycopg.connect(app_db.db.service_url, application_name="billing-app") as conn:
        with conn.transaction():
            for name, value in (
                ("actor_id", "u-17"),
                ("request_id", "req-1"),
                ("ip", "203.0.113.7"),
                ("reason", "customer asked"),
            ):
                conn.execute("SELECT set_config(%s, %s, true)", (f"indelible.{name}", value))
            created = change(
                conn,
                "INSERT INTO invoices VALUES (1, 'acme', 'open', 1200, 'tok_secret')",
            )
        with conn.transaction():  # no context: a direct change to the database
            updated = change(
                conn,
                "UPDATE invoices SET status = 'void', amount_cents = 0, card_token = 'tok_2'"
                " WHERE id = 1",
            )
        with conn.transaction():
            conn.execute("SET LOCAL indelible.actor_id = 'svc-billing'")
            conn.execute("SET LOCAL indelible.actor_type = 'service'")
            deleted = change(conn, "DELETE FROM invoices WHERE id = 1")
    with relaying(app_db.relay_url, capture_log):
        wait_drained(app_db)
    events = capture_log.events(target_type="invoice", target_id="1")
    assert "tok_" not in json.dumps(events)  # card_token is not an allowed column
    database = app_db.db.name

    def data(statement: str, txid: int, n: int) -> dict[str, Any]:
        return {
            "database": database,
            "table": "public.invoices",
            "statement": statement,
            "txid": txid,
            "db_user": role,
            "current_user": role,
            "application_name": "billing-app",
            "outbox": {"statement": n, "row": n},
        }

    assert without_ids(events) == [
        {
            "event_type": "invoice.created",
            "occurred_at": created[0],
            "actor": {"id": "u-17", "type": "user"},
            "action": "create",
            "outcome": "success",
            "target": {"type": "invoice", "id": "1"},
            "reason": "customer asked",
            "context": {"source": "app", "request_id": "req-1", "ip": "203.0.113.7"},
            "changes": [
                {"field": "id", "after": 1},
                {"field": "customer", "after": "acme"},
                {"field": "status", "after": "open"},
                {"field": "amount_cents", "after": 1200},
            ],
            "data": data("insert", created[1], 1),
        },
        {
            "event_type": "invoice.updated",
            "occurred_at": updated[0],
            "actor": {"id": role, "type": "db_role"},
            "action": "update",
            "outcome": "success",
            "target": {"type": "invoice", "id": "1"},
            "context": {"source": "db_trigger"},
            "changes": [
                {"field": "status", "before": "open", "after": "void"},
                {"field": "amount_cents", "before": 1200, "after": 0},
            ],
            "data": data("update", updated[1], 2),
        },
        {
            "event_type": "invoice.deleted",
            "occurred_at": deleted[0],
            "actor": {"id": "svc-billing", "type": "service"},
            "action": "delete",
            "outcome": "success",
            "target": {"type": "invoice", "id": "1"},
            "context": {"source": "app"},
            "changes": [
                {"field": "id", "before": 1},
                {"field": "customer", "before": "acme"},
                {"field": "status", "before": "void"},
                {"field": "amount_cents", "before": 0},
            ],
            "data": data("delete", deleted[1], 3),
        },
    ]
    assert len({event["event_id"] for event in events}) == 3
    assert created[1] < updated[1] < deleted[1]


SAMPLES = """
CREATE TABLE samples (
    id int PRIMARY KEY, big bigint, huge numeric, price numeric(12, 2), ratio float8,
    small real, flag boolean, raw bytea, at timestamptz, local_at timestamp, day date,
    span interval, doc jsonb, doc_big jsonb, doc_text json, tags text[], uid uuid,
    label varchar(10), code char(5)
)"""


def test_values_are_encoded_exactly_whatever_the_writing_session_settings(
    app_db: App, capture_log: Log
) -> None:
    app_db.create(SAMPLES, "samples")
    install(app_db, "samples", "--target-type", "sample")
    with app_db.app() as conn, conn.transaction():
        # the writer's own settings must not leak into what is recorded
        conn.execute("SET LOCAL TimeZone = 'Asia/Kolkata'")
        conn.execute("SET LOCAL DateStyle = 'SQL, DMY'")
        conn.execute("SET LOCAL IntervalStyle = 'sql_standard'")
        conn.execute("SET LOCAL extra_float_digits = -3")
        conn.execute("SET LOCAL bytea_output = 'escape'")
        conn.execute(
            "INSERT INTO samples VALUES (1, 9007199254740993,"
            " 123456789012345678901234567890.123456789, 12.5, 0.1, 1.5, true, '\\x00ff10',"
            " '2026-03-04 05:06:07.123456+00', '2026-03-04 05:06:07', '2026-03-04',"
            ' \'1 mon 2 days 03:04:05\', \'{"a": [1, 2.5, "x"], "b": null}\','
            ' \'{"n": 12345678901234567890}\', \'{"k": 1, "k": 2}\', \'{a,"b c",NULL}\','
            " 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'x', 'ab')"
        )
        conn.execute(
            "INSERT INTO samples (id, big, ratio, small, at) VALUES"
            " (2, 42, 'NaN', '-0', 'infinity')"
        )
    with relaying(app_db.relay_url, capture_log):
        wait_drained(app_db)
    events = {e["target"]["id"]: e for e in capture_log.events(target_type="sample")}
    first = {c["field"]: c["after"] for c in events["1"]["changes"]}
    assert first == {
        "id": 1,
        "big": "9007199254740993",
        "huge": "123456789012345678901234567890.123456789",
        "price": "12.50",
        "ratio": 0.1,
        "small": 1.5,
        "flag": True,
        "raw": "AP8Q",
        "at": "2026-03-04T05:06:07.123456Z",
        "local_at": "2026-03-04T05:06:07",
        "day": "2026-03-04",
        "span": "P1M2DT3H4M5S",
        "doc": {"a": [1, 2.5, "x"], "b": None},
        "doc_big": '{"n": 12345678901234567890}',
        "doc_text": '{"k": 1, "k": 2}',
        "tags": '{a,"b c",NULL}',
        "uid": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "label": "x",
        "code": "ab   ",
    }
    second = {c["field"]: c["after"] for c in events["2"]["changes"]}
    assert second["big"] == 42 and second["ratio"] == "NaN" and second["small"] == "-0"
    assert second["at"] == "infinity" and second["doc"] is None and second["raw"] is None


def test_a_bulk_update_of_10000_rows_is_10000_exact_change_events(
    app_db: App, capture_log: Log
) -> None:
    app_db.create(INVOICES, "invoices")
    with app_db.owner() as conn:  # before the capture: not recorded
        conn.execute(
            "INSERT INTO invoices SELECT g, 'cust-' || (g % 97), 'open', g * 7, 'tok'"
            " FROM generate_series(1, 10000) g"
        )
    install(app_db, "invoices", "--target-type", "bulk_invoice", "--columns",
            "id,customer,status,amount_cents")  # fmt: skip
    with app_db.app() as conn:
        conn.execute(
            "UPDATE invoices SET status = CASE WHEN id % 3 = 0 THEN 'void' ELSE 'paid' END,"
            " amount_cents = amount_cents + id % 5"
        )
    with relaying(app_db.relay_url, capture_log):
        wait_drained(app_db, timeout=60)
    events = capture_log.events(target_type="bulk_invoice")
    assert len(events) == 10_000
    assert len({e["event_id"] for e in events}) == 10_000
    assert len({e["data"]["txid"] for e in events}) == 1  # one statement, one transaction
    seen = set()
    for event in events:
        n = int(event["target"]["id"])
        seen.add(n)
        expected = [
            {"field": "status", "before": "open", "after": "void" if n % 3 == 0 else "paid"}
        ]
        if n % 5:
            expected.append({"field": "amount_cents", "before": n * 7, "after": n * 7 + n % 5})
        assert event["changes"] == expected, event
        assert event["action"] == "update" and event["actor"]["type"] == "db_role"
    assert seen == set(range(1, 10_001))


def test_what_does_not_change_a_captured_value_records_nothing(
    app_db: App, capture_log: Log
) -> None:
    app_db.create(INVOICES, "invoices")
    install(app_db, "invoices", "--target-type", "quiet_invoice", "--columns",
            "id,customer,status,amount_cents")  # fmt: skip
    with app_db.app() as conn:
        conn.execute(
            "INSERT INTO invoices VALUES (1, 'acme', 'open', 5, 'a'), (2, 'b', 'x', 1, NULL)"
        )
        conn.execute("UPDATE invoices SET status = status")  # same values
        conn.execute("UPDATE invoices SET card_token = 'b'")  # not a captured column
        conn.execute("UPDATE invoices SET amount_cents = 5 WHERE id = 1")
        conn.execute("DELETE FROM invoices WHERE id = 99")  # no row
        with pytest.raises(psycopg.errors.DivisionByZero), conn.transaction():
            # rolled back: recorded nowhere
            conn.execute("UPDATE invoices SET status = 'rolled back'")
            conn.execute("SAVEPOINT s")
            conn.execute("INSERT INTO invoices VALUES (3, 'c', 'x', 1, NULL)")
            conn.execute("ROLLBACK TO SAVEPOINT s")
            conn.execute("SELECT 1/0")
    with relaying(app_db.relay_url, capture_log):
        wait_drained(app_db)
    events = capture_log.events(target_type="quiet_invoice")
    assert [(e["action"], e["target"]["id"]) for e in events] == [("create", "1"), ("create", "2")]


def test_rows_whose_key_changed_are_paired_by_the_row_not_the_key(
    app_db: App, capture_log: Log
) -> None:
    app_db.create(INVOICES, "invoices")
    install(app_db, "invoices", "--target-type", "moved_invoice")
    with app_db.app() as conn:
        conn.execute(
            "INSERT INTO invoices VALUES (1, 'a', 'open', 10), (2, 'b', 'open', 20),"
            " (3, 'c', 'open', 30)"
        )
        # 1 -> 5 and 2 -> 1 in one statement: joined by key, old 1 would meet new 1 (row 2)
        conn.execute(
            "UPDATE invoices SET id = CASE id WHEN 1 THEN 5 WHEN 2 THEN 1 ELSE id END,"
            " status = 'moved'"
        )
    with relaying(app_db.relay_url, capture_log):
        wait_drained(app_db)
    updates = capture_log.events(target_type="moved_invoice", event_type="moved_invoice.updated")
    found = {
        e["target"]["id"]: (e.get("related"), e["changes"], e["data"]["outbox"]["statement"])
        for e in updates
    }
    moved = [{"type": "moved_invoice", "id": "1"}], [{"type": "moved_invoice", "id": "2"}]
    status = {"field": "status", "before": "open", "after": "moved"}
    assert {k: v[:2] for k, v in found.items()} == {
        "5": (moved[0], [{"field": "id", "before": 1, "after": 5}, status]),
        "1": (moved[1], [{"field": "id", "before": 2, "after": 1}, status]),
        "3": (None, [status]),
    }
    assert len({v[2] for v in found.values()}) == 1  # one statement


def test_truncate_records_every_row_as_deleted(app_db: App, capture_log: Log) -> None:
    app_db.create(INVOICES, "invoices")
    install(app_db, "invoices", "--target-type", "truncated_invoice", "--columns",
            "id,status")  # fmt: skip
    with app_db.app() as conn:
        conn.execute("INSERT INTO invoices VALUES (1, 'a', 'open', 1), (2, 'b', 'paid', 2)")
        conn.execute("TRUNCATE invoices")
    with relaying(app_db.relay_url, capture_log):
        wait_drained(app_db)
    deleted = capture_log.events(
        target_type="truncated_invoice", event_type="truncated_invoice.deleted"
    )
    assert sorted((e["target"]["id"], e["data"]["statement"], e["action"]) for e in deleted) == [
        ("1", "truncate", "delete"),
        ("2", "truncate", "delete"),
    ]
    assert deleted[0]["changes"][1]["before"] in ("open", "paid")


def test_a_restored_database_reusing_outbox_numbers_is_not_taken_for_a_replay(
    app_db: App, capture_log: Log
) -> None:
    """After a restore from a backup the same (statement, row) numbers are handed out again,
    to other changes: their events get other ids, so both are recorded."""
    app_db.create(INVOICES, "invoices")
    install(app_db, "invoices", "--target-type", "restored_invoice")
    with app_db.app() as conn:
        conn.execute("INSERT INTO invoices VALUES (1, 'before the restore', 'open', 1)")
        conn.execute("DELETE FROM invoices")
    with relaying(app_db.relay_url, capture_log):
        wait_drained(app_db)
    with app_db.owner() as conn:  # as a restore of an earlier backup would leave them
        conn.execute("ALTER SEQUENCE indelible_capture.statement_ids RESTART WITH 1")
        conn.execute("ALTER TABLE indelible_capture.changes_1_1 ALTER COLUMN id RESTART WITH 1")
    with app_db.app() as conn:
        conn.execute("INSERT INTO invoices VALUES (1, 'after the restore', 'open', 1)")
    with relaying(app_db.relay_url, capture_log):
        wait_drained(app_db)
    events = capture_log.events(event_type="restored_invoice.created")
    assert [e["data"]["outbox"] for e in events] == [{"statement": 1, "row": 1}] * 2
    assert [e["changes"][1]["after"] for e in events] == ["before the restore", "after the restore"]
    assert events[0]["event_id"] != events[1]["event_id"]


# -- install, status, uninstall ---------------------------------------------------------------


def fails(code: int, *args: str) -> str:
    done = run_cli("pg-capture", *args, "--json")
    assert done.code == code, done.stdout + done.stderr
    message: str = json.loads(done.stdout)["error"]["message"]
    return message


def test_bad_input_is_refused_with_a_clear_error(app_db: App) -> None:
    app_db.create(INVOICES, "invoices")
    with app_db.owner() as conn:
        conn.execute("CREATE TABLE nokey (a int, b text)")
        conn.execute("CREATE TABLE lookups (code text NOT NULL UNIQUE, n int UNIQUE, v text)")
        conn.execute("CREATE TABLE parts (id int PRIMARY KEY) PARTITION BY RANGE (id)")
    dsn = app_db.owner_url
    assert "not a libpq connection string" in fails(2, "status", "--dsn", "this is not a dsn")
    assert "cannot connect" in fails(3, "status", "--dsn", "postgresql://nobody@127.0.0.1:1/x")
    table = ("install", "--dsn", dsn, "--table")
    assert "has no primary key: give --key" in fails(2, *table, "nokey")
    assert "no unique index on exactly" in fails(2, *table, "nokey", "--key", "a")
    assert "may be NULL" in fails(2, *table, "lookups", "--key", "n")
    assert "has no column nope" in fails(2, *table, "invoices", "--columns", "id,nope")
    assert "must be among --columns" in fails(2, *table, "invoices", "--columns", "status")
    assert "--target-type must be" in fails(2, *table, "invoices", "--target-type", "Inv!")
    assert "partitioned" in fails(2, *table, "parts")
    assert "no table" in fails(2, *table, "public.missing")
    assert "not a table name" in fails(2, *table, "invoices; DROP TABLE nokey")
    assert "not installed" in fails(2, "uninstall", "--dsn", dsn, "--table", "invoices")
    assert json.loads(run_cli("pg-capture", "status", "--dsn", dsn, "--json").stdout) == {
        "installed": False,
        "captures": [],
    }
    as_app = ("install", "--dsn", app_db.db.service_url, "--table", "invoices")
    assert f"public.invoices belongs to {app_db.db.owner}: install as" in fails(2, *as_app)
    done = run_cli(
        "pg-capture", *table, "lookups", "--key", "code", "--target-type", "lookup", "--json"
    )
    assert done.code == 0, done.stdout
    assert json.loads(done.stdout)["key"] == ["code"]
    with app_db.owner() as conn:  # nothing of the refused installs was left behind
        triggers = conn.execute(
            "SELECT tgrelid::regclass::text, count(*) FROM pg_trigger WHERE NOT tgisinternal"
            " GROUP BY 1"
        ).fetchall()
        assert conn.execute("SELECT to_regclass('nokey')").fetchone() == ("nokey",)
    assert triggers == [("lookups", 5)]
    with app_db.db.admin() as conn:  # another table owner may not use the first one's outbox
        conn.execute("CREATE TABLE owned (id int PRIMARY KEY)")
        conn.execute(f"ALTER TABLE owned OWNER TO {app_db.app_role}")
    other = ("install", "--dsn", app_db.db.service_url, "--table", "owned")
    assert f"belongs to {app_db.db.owner}: install as" in fails(2, *other)


def test_installing_again_is_safe_and_a_new_shape_drains_the_old_one(
    app_db: App, capture_log: Log
) -> None:
    app_db.create(INVOICES, "invoices")
    args = ("--target-type", "reshaped_invoice", "--columns", "id,status")
    assert install(app_db, "invoices", *args)["outcome"] == "installed"
    assert install(app_db, "invoices", *args)["outcome"] == "unchanged"
    with app_db.app() as conn:
        conn.execute("INSERT INTO invoices VALUES (1, 'a', 'open', 10)")  # pending, old shape
    wider = install(app_db, "invoices", "--target-type", "reshaped_invoice")
    assert (wider["outcome"], wider["generation"]) == ("new_generation", 2)
    with app_db.app() as conn:
        conn.execute("UPDATE invoices SET status = 'paid', amount_cents = 11")
    state = app_db.status()["captures"][0]
    assert (state["pending"], [g["pending"] for g in state["generations"]]) == (2, [1, 1])
    with relaying(app_db.relay_url, capture_log):
        wait_drained(app_db)
    events = capture_log.events(target_type="reshaped_invoice")
    assert [[c["field"] for c in e["changes"]] for e in events] == [
        ["id", "status"],  # recorded before the reshape, with the columns allowed then
        ["status", "amount_cents"],
    ]
    again = install(app_db, "invoices", "--target-type", "reshaped_invoice")
    assert (again["outcome"], again["dropped_generations"]) == ("unchanged", [1])
    with app_db.owner() as conn:
        triggers = conn.execute(
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'invoices'::regclass"
            " AND NOT tgisinternal AND tgenabled = 'A'"
        ).fetchone()
    assert triggers == (5,)


def test_status_names_what_is_wrong_and_the_capture_guards_its_columns(app_db: App) -> None:
    app_db.create(INVOICES, "invoices")
    install(app_db, "invoices", "--target-type", "guarded_invoice")
    with app_db.owner() as conn:
        with pytest.raises(psycopg.errors.DependentObjectsStillExist), conn.transaction():
            conn.execute("ALTER TABLE invoices DROP COLUMN status")
        with pytest.raises(psycopg.errors.FeatureNotSupported), conn.transaction():
            conn.execute("ALTER TABLE invoices ALTER COLUMN amount_cents TYPE numeric")
        conn.execute("ALTER TABLE invoices ADD COLUMN memo text")
        conn.execute("ALTER TABLE invoices DISABLE TRIGGER indelible_capture_update")
    problems = app_db.status()["captures"][0]["problems"]
    assert problems == [
        "trigger update is DISABLED",
        "columns added since install are not captured: memo (run pg-capture install again)",
    ]
    done = run_cli("pg-capture", "status", "--dsn", app_db.owner_url)
    assert done.code == 0 and "PROBLEM: trigger update is DISABLED" in done.stdout
    install(app_db, "invoices", "--target-type", "guarded_invoice")  # repairs and widens
    assert app_db.status()["captures"][0]["problems"] == []


def test_the_application_cannot_write_the_outbox_nor_the_relay_a_change(app_db: App) -> None:
    app_db.create(INVOICES, "invoices")
    install(app_db, "invoices", "--target-type", "locked_invoice")
    with app_db.app() as conn:
        conn.execute("INSERT INTO invoices VALUES (1, 'a', 'open', 10)")  # through the trigger
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM indelible_capture.changes_1_1")
    with psycopg.connect(app_db.relay_url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM indelible_capture.changes_1_1").fetchone() == (1,)
        for forgery in (
            "UPDATE indelible_capture.changes_1_1 SET a3 = 'forged'",
            "INSERT INTO indelible_capture.changes_1_1 (stmt) VALUES (1)",
            "UPDATE indelible_capture.statements SET actor_id = 'someone else'",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(forgery)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("INSERT INTO invoices VALUES (2, 'b', 'open', 1)")


def test_uninstall_refuses_to_discard_pending_rows_unless_forced(app_db: App) -> None:
    app_db.create(INVOICES, "invoices")
    install(app_db, "invoices", "--target-type", "gone_invoice")
    with app_db.app() as conn:
        conn.execute("INSERT INTO invoices VALUES (1, 'a', 'open', 10)")
    message = fails(2, "uninstall", "--dsn", app_db.owner_url, "--table", "invoices")
    assert "still holds 1 rows" in message
    done = run_cli(
        "pg-capture", "uninstall", "--dsn", app_db.owner_url, "--table", "invoices", "--force",
        "--json",
    )  # fmt: skip
    assert done.code == 0, done.stdout
    assert json.loads(done.stdout) == {"table": "invoices", "discarded": 1, "dropped_schema": True}
    with app_db.app() as conn:
        conn.execute("UPDATE invoices SET status = 'after uninstall'")  # no trigger left
        assert conn.execute("SELECT to_regnamespace('indelible_capture')").fetchone() == (None,)


def test_the_event_id_is_a_uuidv8_of_the_source_the_row_and_its_content() -> None:
    from indelible.service.pgcapture import ChangeRow, Source, build_event
    from indelible.service.pgcapture.catalog import Column, Generation

    columns = (Column("id", "bigint", "int"), Column("status", "text", "text"))
    g = Generation(1, 1, "public", "invoices", "invoice", ("id",), columns, True)
    row = ChangeRow(
        stmt=7, id=9, op="U", txid=1234, at_us=1_795_000_000_123_456, session_role="app",
        role_name="app", application_name="billing", actor_id=None, actor_type=None,
        request_id=None, reason=None, ip=None, before=("1", "open"), after=("1", "void"),
    )  # fmt: skip
    source = Source("7715145323959105672", "billing")
    first = build_event(source, g, row)
    assert UUID8.fullmatch(first["event_id"])
    assert build_event(source, g, row) == first  # the same row, the same event, byte for byte
    others = [
        build_event(Source("1", "billing"), g, row),  # another cluster
        build_event(Source(source.system_identifier, "other"), g, row),  # another database
        build_event(source, g, replace(row, after=("1", "paid"))),  # other content
        build_event(source, g, replace(row, at_us=row.at_us + 1)),  # another moment
        build_event(source, g, replace(row, stmt=8)),  # another outbox row
    ]
    assert len({first["event_id"], *(event["event_id"] for event in others)}) == 6
    assert first["occurred_at"] == format_timestamp(1_795_000_000_123)
