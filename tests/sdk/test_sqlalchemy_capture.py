"""The SQLAlchemy integration on real SQLite and PostgreSQL, delivering to a real server.

Each test declares its own models (mapper events are per class) with a target type of its
own, records under a request_id of its own, and reads back what the live log holds.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Session, load_only, sessionmaker

from indelible.sdk import Client, context
from indelible.sdk.integrations.changes import MASK, Tracked, json_value, target_id
from indelible.sdk.integrations.relay import Relay
from indelible.sdk.integrations.sqlalchemy import SQLAlchemyCapture, create_outbox, outbox_table
from tests import pg
from tests.sdk.capture_helpers import USER, logged, new_client, request_id, state
from tests.sdk.live import LiveServer


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'app.sqlite3'}"
    db: pg.Database = request.getfixturevalue("pg_database")
    return db.admin_url.replace("postgresql://", "postgresql+psycopg://", 1)


@dataclass
class App:
    """An application: its engine, models, session factory, capture and client."""

    engine: sa.Engine
    Invoice: Any
    factory: sessionmaker[Session]
    capture: SQLAlchemyCapture
    client: Client
    live: LiveServer
    kind: str
    request: str

    def events(self, count: int) -> list[dict[str, Any]]:
        assert self.capture.relay is not None
        return logged(self.live, self.client, self.request, self.capture.relay.drain, count)

    def outbox_rows(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT count(*) FROM indelible_outbox")).scalar_one())


def make_app(
    db_url: str, live: LiveServer, tmp_path: Path, *, record_failures: bool = False
) -> App:
    class Base(DeclarativeBase):
        pass

    class Invoice(Base):
        __tablename__ = "invoices"
        id = sa.Column(sa.Integer, primary_key=True)
        status = sa.Column(sa.String(20), nullable=False)
        amount = sa.Column(sa.Numeric(12, 2), nullable=False)
        due_on = sa.Column(sa.Date)
        iban = sa.Column(sa.String(34))
        notes = sa.Column(sa.Text)  # not on the allowlist: never recorded
        code = sa.Column(sa.String(10), unique=True)

    kind = f"inv_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(db_url)
    outbox_table(Base.metadata)
    Base.metadata.create_all(engine)
    client = new_client(live, tmp_path)
    capture = SQLAlchemyCapture(client, record_failures=record_failures)
    capture.track(
        Invoice, fields=["status", "amount", "due_on", "code"], masked=["iban"], target_type=kind
    )
    factory = sessionmaker(engine)
    capture.install(factory)
    capture.start_relay(engine, poll_interval=0.1)
    return App(engine, Invoice, factory, capture, client, live, kind, request_id())


@pytest.fixture
def app(db_url: str, live: LiveServer, tmp_path: Path) -> Iterator[App]:
    made = make_app(db_url, live, tmp_path)
    try:
        yield made
    finally:
        made.capture.close()
        made.client.close()
        made.engine.dispose()


@pytest.fixture
def failing_app(db_url: str, live: LiveServer, tmp_path: Path) -> Iterator[App]:
    made = make_app(db_url, live, tmp_path, record_failures=True)
    try:
        yield made
    finally:
        made.capture.close()
        made.client.close()
        made.engine.dispose()


def test_create_update_delete_record_before_and_after_field_by_field(app: App) -> None:
    who = context(actor=USER, request_id=app.request, ip="203.0.113.7", reason="customer asked")
    with who, app.factory() as session:
        invoice = app.Invoice(
                status="open", amount=Decimal("120.50"), due_on=dt.date(2026, 12, 31),
                iban="DE89370400440532013000", notes="secret note", code="A-1",
            )  # fmt: skip
        session.add(invoice)
        session.commit()
        key = invoice.id
        invoice.status, invoice.amount, invoice.notes = "void", Decimal("0"), "x"
        session.commit()
        invoice.notes = "only an unlisted field"
        session.commit()
        invoice.iban = "FR7630006000011234567890189"
        session.commit()
        session.delete(invoice)
        session.commit()
    created, updated, masked, deleted = app.events(4)
    target = {"type": app.kind, "id": str(key)}
    assert created["event_type"] == f"{app.kind}.created"
    assert (created["action"], created["outcome"], created["target"]) == (
        "create",
        "success",
        target,
    )
    assert created["changes"] == [
        {"field": "status", "after": "open"},
        {"field": "amount", "after": "120.50"},
        {"field": "due_on", "after": "2026-12-31"},
        {"field": "code", "after": "A-1"},
        {"field": "iban", "after": MASK},
    ]
    assert created["actor"] == USER
    assert created["reason"] == "customer asked"
    assert created["context"] == {"ip": "203.0.113.7", "request_id": app.request, "source": "app"}
    assert (updated["event_type"], updated["action"], updated["target"]) == (
        f"{app.kind}.updated", "update", target,
    )  # fmt: skip
    assert updated["changes"] == [
        {"field": "status", "before": "open", "after": "void"},
        {"field": "amount", "before": "120.50", "after": "0.00"},
    ]
    assert masked["changes"] == [{"field": "iban", "before": MASK, "after": MASK}]
    assert (deleted["event_type"], deleted["action"]) == (f"{app.kind}.deleted", "delete")
    assert deleted["changes"] == [
        {"field": "status", "before": "void"},
        {"field": "amount", "before": "0.00"},
        {"field": "due_on", "before": "2026-12-31"},
        {"field": "code", "before": "A-1"},
        {"field": "iban", "before": MASK},
    ]
    assert "secret" not in orjson.dumps([created, updated, masked, deleted]).decode()
    assert "DE89" not in orjson.dumps([created, masked, deleted]).decode()
    assert app.outbox_rows() == 0
    replayed = state(app.live, app.kind, str(key))
    assert (replayed["exists"], replayed["complete"], replayed["gaps"]) == (False, True, [])


def test_an_expired_or_unloaded_attribute_set_without_reading_keeps_its_real_old_value(
    app: App,
) -> None:
    with context(actor=USER, request_id=app.request):
        with app.factory() as session:
            invoice = app.Invoice(status="open", amount=Decimal("10.00"), code="E-1")
            session.add(invoice)
            session.flush()
            key = invoice.id
            session.commit()  # expires every attribute
            assert "status" not in sa.inspect(invoice).dict
            invoice.status = "sent"  # set without loading it first
            session.commit()
            session.expire(invoice, ["amount"])
            invoice.amount = Decimal("11.00")
            session.commit()
        with app.factory() as session:
            partial = session.scalars(
                sa.select(app.Invoice).options(load_only(app.Invoice.id))
            ).one()
            partial.status, partial.code = "paid", "E-2"  # deferred: never loaded
            session.commit()
        with app.factory() as session:  # the row changed behind a loaded object's back
            stale = session.get(app.Invoice, key)
            assert stale is not None and stale.status == "paid"
            with app.engine.begin() as other:
                other.execute(sa.text("UPDATE invoices SET due_on = '2027-01-02'"))
            session.expire(stale)
            stale.due_on = dt.date(2027, 3, 4)
            session.commit()
    events = app.events(5)
    assert [e["action"] for e in events] == ["create"] + ["update"] * 4
    _, sent, amount, paid, due = events
    assert sent["changes"] == [{"field": "status", "before": "open", "after": "sent"}]
    assert amount["changes"] == [{"field": "amount", "before": "10.00", "after": "11.00"}]
    assert paid["changes"] == [
        {"field": "status", "before": "sent", "after": "paid"},
        {"field": "code", "before": "E-1", "after": "E-2"},
    ]
    assert due["changes"] == [{"field": "due_on", "before": "2027-01-02", "after": "2027-03-04"}]
    # the out-of-band UPDATE shows in the replay as a gap: the log never saw it, the before did
    gaps = state(app.live, app.kind, str(key))["gaps"]
    assert [(g["field"], g.get("expected"), g["found"]) for g in gaps] == [
        ("due_on", None, "2027-01-02")
    ]


def test_updates_of_no_allowed_field_and_rollbacks_record_nothing(app: App) -> None:
    with context(actor=USER, request_id=app.request), app.factory() as session:
        invoice = app.Invoice(status="open", amount=Decimal("5.00"), notes="a")
        session.add(invoice)
        session.commit()
        invoice.notes = "b"
        invoice.status = "open"  # the same value
        invoice.amount = Decimal("5.0")  # the same number
        session.commit()
        invoice.status = "void"
        session.flush()
        session.rollback()
        session.add(app.Invoice(status="draft", amount=Decimal("1.00")))
        session.flush()
        session.rollback()
    (only,) = app.events(1)
    assert only["action"] == "create"
    assert app.outbox_rows() == 0
    with app.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT status FROM invoices")).scalars().all() == ["open"]


def test_several_objects_and_flushes_in_one_transaction(app: App) -> None:
    with context(actor=USER, request_id=app.request), app.factory() as session:
        first, second = (
            app.Invoice(status="open", amount=Decimal("1.00"), code="S-1"),
            app.Invoice(status="open", amount=Decimal("2.00"), code="S-2"),
        )
        session.add_all([first, second])
        session.commit()
        keys = (first.id, second.id)
        third = app.Invoice(status="draft", amount=Decimal("3.00"), code="S-3")
        session.add(third)
        first.status = "paid"
        session.flush()
        third_id = third.id
        session.delete(second)
        third.status = "open"
        session.commit()
    events = app.events(6)
    changes = {(e["action"], e["target"]["id"]): e["changes"] for e in events[2:]}
    assert len(events) == 6 and len(changes) == 4
    assert changes[("create", str(third_id))][:2] == [
        {"field": "status", "after": "draft"},
        {"field": "amount", "after": "3.00"},
    ]
    assert changes[("update", str(keys[0]))] == [
        {"field": "status", "before": "open", "after": "paid"}
    ]
    assert changes[("update", str(third_id))] == [
        {"field": "status", "before": "draft", "after": "open"}
    ]
    assert changes[("delete", str(keys[1]))][:2] == [
        {"field": "status", "before": "open"},
        {"field": "amount", "before": "2.00"},
    ]


def test_rolled_back_attempts_are_recorded_as_failures_when_asked(failing_app: App) -> None:
    app = failing_app
    with context(actor=USER, request_id=app.request), app.factory() as session:
        invoice = app.Invoice(status="open", amount=Decimal("9.00"), code="F-1")
        session.add(invoice)
        session.commit()
        key = invoice.id
        invoice.status = "void"
        session.flush()
        session.rollback()  # a flushed change, rolled back
        session.add(app.Invoice(status="dup", amount=Decimal("1.00"), code="F-1"))
        with pytest.raises(sa.exc.IntegrityError):
            session.flush()  # the flush itself fails
        session.rollback()
        invoice = session.get(app.Invoice, key)
        assert invoice is not None
        invoice.status = "sent"
        savepoint = session.begin_nested()
        invoice.amount = Decimal("99.00")
        session.flush()
        savepoint.rollback()  # a savepoint rolled back inside a committed transaction
        session.commit()
    events = app.events(5)
    assert sorted((e["action"], e["outcome"]) for e in events) == [
        ("create", "failure"),
        ("create", "success"),
        ("update", "failure"),
        ("update", "failure"),
        ("update", "success"),
    ]
    (duplicate,) = [e for e in events if e["action"] == "create" and e["outcome"] == "failure"]
    assert "target" not in duplicate  # it never got a key
    assert {"field": "code", "after": "F-1"} in duplicate["changes"]
    assert {"field": "status", "after": "dup"} in duplicate["changes"]
    updates = {
        (e["outcome"], orjson.dumps(e["changes"], option=orjson.OPT_SORT_KEYS).decode()): e
        for e in events
        if e["action"] == "update"
    }
    voided = [{"field": "status", "before": "open", "after": "void"}]
    sent = [{"field": "status", "before": "open", "after": "sent"}]
    raised = [{"field": "amount", "before": "9.00", "after": "99.00"}]
    assert sorted(updates) == sorted(
        (outcome, orjson.dumps(changes, option=orjson.OPT_SORT_KEYS).decode())
        for outcome, changes in (("failure", voided), ("success", sent), ("failure", raised))
    )
    assert all(e["target"] == {"type": app.kind, "id": str(key)} for e in updates.values())
    with app.engine.connect() as conn:
        row = conn.execute(sa.text("SELECT status, amount FROM invoices")).one()
    assert (row[0], Decimal(row[1])) == ("sent", Decimal("9.00"))


def test_the_event_and_the_change_commit_together_or_not_at_all(app: App) -> None:
    """Until the relay moves it, the event is a row of the application's own transaction."""
    app.capture.close()  # no relay: look at the table itself
    with context(actor=USER, request_id=app.request), app.factory() as session:
        session.add(app.Invoice(status="open", amount=Decimal("1.00")))
        session.flush()
        with app.engine.connect() as other:  # not visible before the commit
            assert other.execute(sa.text("SELECT count(*) FROM indelible_outbox")).scalar() == 0
        session.commit()
    assert app.outbox_rows() == 1
    with app.engine.connect() as conn:
        (body,) = conn.execute(sa.text("SELECT event FROM indelible_outbox")).scalars()
    event = orjson.loads(body)
    assert (event["action"], event["context"]["request_id"]) == ("create", app.request)
    relay = Relay(_Access(app.engine), app.client)
    assert relay.drain() == 1
    assert app.outbox_rows() == 0


class _Access:
    """The relay's table access, as the capture makes it, for a relay of the test's own."""

    def __init__(self, engine: sa.Engine) -> None:
        from indelible.sdk.integrations.sqlalchemy import _EngineOutbox

        self._inner = _EngineOutbox(engine)
        self.fail_deletes = 0

    def fetch(self, limit: int) -> list[tuple[int, str]]:
        return self._inner.fetch(limit)

    def delete(self, ids: Any) -> None:
        if self.fail_deletes:
            self.fail_deletes -= 1
            raise RuntimeError("the database went away before the delete")
        self._inner.delete(ids)

    def close(self) -> None:
        self._inner.close()


def test_a_relay_that_fails_after_handing_over_sends_again_and_the_log_records_once(
    app: App,
) -> None:
    app.capture.close()
    access = _Access(app.engine)
    access.fail_deletes = 1
    relay = Relay(access, app.client)
    with context(actor=USER, request_id=app.request), app.factory() as session:
        session.add_all([app.Invoice(status="open", amount=Decimal(n)) for n in range(3)])
        session.commit()
    with pytest.raises(RuntimeError):
        relay.drain()
    assert app.outbox_rows() == 3  # handed to the client, but not deleted: kept
    assert relay.drain() == 3
    events = logged(app.live, app.client, app.request, lambda: None, 3)
    assert len(events) == 3
    assert len({e["event_id"] for e in events}) == 3
    assert app.outbox_rows() == 0


def test_create_outbox_makes_the_table_once(db_url: str) -> None:
    engine = sa.create_engine(db_url)
    try:
        create_outbox(engine)
        create_outbox(engine)
        assert sa.inspect(engine).has_table("indelible_outbox")
    finally:
        engine.dispose()


def test_tracking_checks_its_arguments() -> None:
    class Base(DeclarativeBase):
        pass

    class Thing(Base):
        __tablename__ = "things"
        id = sa.Column(sa.Integer, primary_key=True)
        name = sa.Column(sa.String)
        secret = sa.Column(sa.String)

    capture = SQLAlchemyCapture(object())
    with pytest.raises(ValueError, match="no column attributes"):
        capture.track(Thing, fields=["name", "missing"])
    with pytest.raises(ValueError, match="both allowed and masked"):
        capture.track(Thing, fields=["name", "secret"], masked=["secret"])
    with pytest.raises(ValueError, match="at least one field"):
        capture.track(Thing)
    with pytest.raises(ValueError, match="token"):
        capture.track(Thing, fields=["name"], target_type="Thing")
    with pytest.raises(ValueError, match="not one string"):
        capture.track(Thing, fields="name")
    assert capture.track(Thing, fields=["name"], masked=["secret"]) is Thing


class Colour(enum.Enum):
    RED = "red"


def test_values_become_json_that_round_trips_them() -> None:
    assert json_value(Decimal("12.50")) == "12.50"
    assert json_value(2**53) == str(2**53)
    assert json_value(-(2**53 - 1)) == -(2**53 - 1)
    assert json_value(1.5) == 1.5
    assert json_value(math.nan) == "nan"
    assert json_value(1e300) == "1e+300"
    assert json_value(True) is True
    assert json_value(dt.datetime(2026, 3, 4, 5, 6, 7, 123456)) == "2026-03-04T05:06:07.123456"
    aware = dt.datetime(2026, 3, 4, 6, 6, 7, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert json_value(aware) == "2026-03-04T05:06:07Z"
    assert json_value(dt.date(2026, 3, 4)) == "2026-03-04"
    assert json_value(dt.time(5, 6)) == "05:06:00"
    assert json_value(dt.timedelta(days=1, seconds=3, microseconds=500)) == "P1DT3.0005S"
    assert json_value(-dt.timedelta(seconds=2)) == "-P0DT2S"
    assert json_value(uuid.UUID(int=1)) == "00000000-0000-0000-0000-000000000001"
    assert json_value(b"\x00\xff\x10") == "AP8Q"
    assert json_value(Colour.RED) == "red"
    assert json_value({"a": [1, Decimal("2.0")], 3: None}) == {"a": [1, "2.0"], "3": None}
    assert json_value({2, 1}) == [1, 2]
    assert json_value(object).startswith("<class")
    assert target_id((42,)) == "42"
    assert target_id(("acme", 42)) == '["acme","42"]'
    assert target_id((uuid.UUID(int=2),)) == "00000000-0000-0000-0000-000000000002"


def test_the_change_list_masks_and_keeps_the_allowlist_order() -> None:
    tracked = Tracked.build(target_type="invoice", fields=["b", "a"], masked=["m"])
    assert tracked.event_type("update") == "invoice.updated"
    before = {"a": 1, "b": "x", "m": "old secret", "z": 9}
    after = {"a": 2, "b": "x", "m": "new secret", "z": 10}
    from indelible.sdk.integrations.changes import changes_for

    assert changes_for(tracked, before, after) == [
        {"field": "a", "before": 1, "after": 2},
        {"field": "m", "before": MASK, "after": MASK},
    ]
    assert changes_for(tracked, {"m": "same"}, {"m": "same"}) == []
    assert changes_for(tracked, {"a": 1}, {"a": True}) == [
        {"field": "a", "before": 1, "after": True}
    ]
    assert changes_for(tracked, None, after) == [
        {"field": "b", "after": "x"},
        {"field": "a", "after": 2},
        {"field": "m", "after": MASK},
    ]


def test_server_defaults_are_read_back_and_subclasses_are_tracked_with_their_base(
    db_url: str, live: LiveServer, tmp_path: Path
) -> None:
    class Base(DeclarativeBase):
        pass

    class Account(Base):
        __tablename__ = "accounts"
        id = sa.Column(sa.Integer, primary_key=True)
        kind = sa.Column(sa.String(20), nullable=False)
        state = sa.Column(sa.String(20), nullable=False, server_default="active")
        __mapper_args__ = {"polymorphic_on": kind, "polymorphic_identity": "account"}  # noqa: RUF012

    class Business(Account):
        __mapper_args__ = {"polymorphic_identity": "business"}  # noqa: RUF012

    kind = f"acct_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(db_url)
    outbox_table(Base.metadata)
    Base.metadata.create_all(engine)
    client = new_client(live, tmp_path)
    capture = SQLAlchemyCapture(client)
    capture.track(Account, fields=["kind", "state"], target_type=kind)
    factory = sessionmaker(engine)
    capture.install(factory)
    relay = capture.start_relay(engine)
    request = request_id()
    try:
        with context(actor=USER, request_id=request), factory() as session:
            business = Business()
            session.add(business)
            session.commit()
            business.state = "closed"
            session.commit()
        created, closed = logged(live, client, request, relay.drain, 2)
    finally:
        capture.close()
        client.close()
        engine.dispose()
    assert created["changes"] == [
        {"field": "kind", "after": "business"},
        {"field": "state", "after": "active"},  # the database's default, read back
    ]
    assert closed["changes"] == [{"field": "state", "before": "active", "after": "closed"}]


def test_a_flush_failing_inside_a_savepoint_leaves_nothing_behind_for_the_next_flush(
    failing_app: App,
) -> None:
    app = failing_app
    with context(actor=USER, request_id=app.request), app.factory() as session:
        kept = app.Invoice(status="open", amount=Decimal("1.00"), code="P-1")
        session.add(kept)
        session.commit()
        try:
            with session.begin_nested():
                kept.status = "undone"  # noted before the failing INSERT runs
                session.add(app.Invoice(status="first", amount=Decimal("2.00"), code="P-2"))
                session.add(app.Invoice(status="clash", amount=Decimal("3.00"), code="P-1"))
                session.flush()
        except sa.exc.IntegrityError:
            pass
        session.add(app.Invoice(status="later", amount=Decimal("4.00"), code="P-3"))
        session.commit()
    events = app.events(5)
    statuses = sorted(
        (
            e["outcome"],
            e["action"],
            next(c["after"] for c in e["changes"] if c["field"] == "status"),
        )
        for e in events
    )
    assert statuses == [
        ("failure", "create", "clash"),
        ("failure", "create", "first"),
        ("failure", "update", "undone"),
        ("success", "create", "later"),
        ("success", "create", "open"),
    ]
    with app.engine.connect() as conn:
        assert sorted(conn.execute(sa.text("SELECT status FROM invoices")).scalars()) == [
            "later",
            "open",
        ]  # the savepoint's update was rolled back with it


def test_a_detached_expired_object_changed_and_added_again_reads_its_old_value_from_the_row(
    app: App,
) -> None:
    with context(actor=USER, request_id=app.request):
        with app.factory() as session:
            invoice = app.Invoice(status="open", amount=Decimal("7.00"), code="D-1")
            session.add(invoice)
            session.commit()  # expired, then detached when the session closes
        invoice.status = "void"  # no session to load the old value from
        with app.factory() as session:
            session.add(invoice)
            session.commit()
    _, voided = app.events(2)
    assert voided["changes"] == [{"field": "status", "before": "open", "after": "void"}]


def test_client_mode_records_after_the_commit_without_a_table(
    db_url: str, live: LiveServer, tmp_path: Path
) -> None:
    made = make_app(db_url, live, tmp_path)
    made.capture.close()
    with made.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE indelible_outbox"))
    made.capture.transactional = False
    try:
        with context(actor=USER, request_id=made.request), made.factory() as session:
            invoice = made.Invoice(status="open", amount=Decimal("1.00"))
            session.add(invoice)
            session.flush()
            assert made.client.pending() == 0  # nothing before the commit
            session.commit()
            invoice.status = "paid"
            session.flush()
            session.rollback()
        events = logged(live, made.client, made.request, lambda: None, 1)
        assert [(e["action"], e["outcome"]) for e in events] == [("create", "success")]
    finally:
        made.client.close()
        made.engine.dispose()
