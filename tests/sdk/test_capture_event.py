"""``Client.capture_event``: the capture integrations' event builder checks exactly what
``build_event`` checks (its split check either proves an event valid or runs the full one),
and the SQLAlchemy integration writes what it built, several events of a flush at once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from indelible.core.event import validate_event
from indelible.errors import InvalidEvent
from indelible.sdk import Client, context
from indelible.sdk.client import LOCAL_LIMITS
from indelible.sdk.integrations.changes import build_change_event
from indelible.sdk.integrations.sqlalchemy import OUTBOX_TABLE, SQLAlchemyCapture, outbox_table

USER = {"id": "u-1", "type": "user"}
TARGET = {"type": "invoice", "id": "42"}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Client]:
    made = Client(
        None, outbox=tmp_path / "outbox.sqlite3", default_actor={"id": "svc", "type": "service"}
    )
    yield made
    made.close()


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def _change(value: Any) -> list[dict[str, Any]]:
    return [{"field": "notes", "before": "old", "after": value}]


def _capture(
    client: Client, changes: list[dict[str, Any]], **kw: Any
) -> tuple[dict[str, Any], bytes]:
    kw.setdefault("target", dict(TARGET))
    return client.capture_event("invoice.updated", action="update", changes=changes, **kw)


def test_the_event_is_build_events_and_its_json_is_the_outbox_row(client: Client) -> None:
    changes: list[dict[str, Any]] = [
        {"field": "status", "before": "open", "after": "paid"},
        {"field": "amount", "before": 1, "after": 2.5},
        {"field": "flag", "before": None, "after": True},
    ]
    with context(actor=USER, request_id="r-1", reason="because"):
        built, encoded = _capture(client, changes)
        reference = client.build_event(
            "invoice.updated", target=TARGET, action="update", changes=changes
        )
    assert orjson.loads(encoded) == built
    assert list(built) == list(reference)
    for name in reference:
        if name not in ("event_id", "occurred_at"):
            assert built[name] == reference[name], name
    assert built["actor"] == USER and built["context"] == {"request_id": "r-1", "source": "app"}
    validate_event(built, now_ms=0, limits=LOCAL_LIMITS)
    client.record_built([built])  # the relay's full check accepts it
    assert client.pending() == 1


def test_each_audit_context_and_default_actor_gets_its_own_envelope(client: Client) -> None:
    changes = _change("x")
    assert _capture(client, changes)[0]["actor"] == {"id": "svc", "type": "service"}
    with context(actor=USER):
        assert _capture(client, changes)[0]["actor"] == USER
        with context(actor={"id": "u-2", "type": "user"}, ip="10.0.0.1"):
            inner = _capture(client, changes)[0]
            assert inner["actor"]["id"] == "u-2" and inner["context"]["ip"] == "10.0.0.1"
        assert _capture(client, changes)[0]["actor"] == USER
    client.default_actor = {"id": "svc-2", "type": "service"}
    assert _capture(client, changes)[0]["actor"]["id"] == "svc-2"
    client.source = "worker"
    assert _capture(client, changes)[0]["context"] == {"source": "worker"}
    first, second = _capture(client, changes)[0], _capture(client, changes)[0]
    assert first["event_id"] != second["event_id"]


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("a\x00b", "nul_character"),
        ("x" * 70_000, "max_length"),
        ("\ud800", "lone_surrogate"),
        (2**60, "integer_range"),
        (float("nan"), "not_finite"),
        (1e300, "integer_range"),
        (_nested(40), "max_depth"),
        ({1: "a"}, "type"),
    ],
)
def test_a_value_build_event_refuses_is_refused_the_same(
    client: Client, value: Any, rule: str
) -> None:
    with pytest.raises(InvalidEvent) as built:
        client.build_event(
            "invoice.updated", target=TARGET, action="update", changes=_change(value)
        )
    with pytest.raises(InvalidEvent) as captured:
        _capture(client, _change(value))
    assert [e.rule for e in captured.value.errors] == [e.rule for e in built.value.errors]
    assert rule in [e.rule for e in captured.value.errors]


def test_nested_and_unusual_values_within_the_rules_are_accepted_by_the_full_check(
    client: Client,
) -> None:
    value = {"lines": [{"sku": "A", "qty": 2, "price": 1.25}], "tags": ["x"]}
    built, encoded = _capture(client, _change(value))
    assert orjson.loads(encoded) == built and built["changes"][0]["after"] == value
    assert (
        _capture(client, _change("back\\u0000slash"))[0]["changes"][0]["after"]
        == "back\\u0000slash"
    )


def test_a_bad_envelope_or_target_is_refused(client: Client, tmp_path: Path) -> None:
    with pytest.raises(InvalidEvent) as empty_id:
        _capture(client, _change("x"), target={"type": "invoice", "id": ""})
    assert "format" in [e.rule for e in empty_id.value.errors]
    with context(ip="not an ip"):
        for _ in range(2):  # a refused envelope is never kept as checked
            with pytest.raises(InvalidEvent):
                _capture(client, _change("x"))
    with pytest.raises(InvalidEvent):
        _capture(client, [{"field": "", "after": 1}])
    anonymous = Client(None, outbox=tmp_path / "anonymous.sqlite3")
    try:
        with pytest.raises(InvalidEvent):
            _capture(anonymous, _change("x"))
    finally:
        anonymous.close()


def test_a_client_without_capture_event_is_used_through_build_event(client: Client) -> None:
    class Plain:
        def build_event(self, event_type: str, **fields: Any) -> dict[str, Any]:
            return client.build_event(event_type, **fields)

    built, encoded = build_change_event(
        Plain(), "invoice.updated", target=dict(TARGET), action="update", changes=_change("x")
    )
    assert orjson.loads(encoded) == built and built["target"] == TARGET


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = "notes"
    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(sa.Text)


def test_sqlalchemy_writes_several_objects_of_a_flush_and_refuses_a_bad_one(
    client: Client, tmp_path: Path
) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'app.sqlite3'}")
    metadata = sa.MetaData()
    table = outbox_table(metadata)
    Base.metadata.create_all(engine)
    metadata.create_all(engine)
    capture = SQLAlchemyCapture(client)
    capture.track(Note, fields=["text"])
    factory = sessionmaker(engine)
    capture.install(factory)
    with context(actor=USER), factory() as session:
        session.add_all([Note(id=i, text=f"note {i}") for i in range(1, 4)])
        session.commit()
    with engine.connect() as conn:
        rows = conn.execute(sa.select(table.c.event).order_by(table.c.id)).scalars().all()
    events = [orjson.loads(row) for row in rows]
    assert [e["target"]["id"] for e in events] == ["1", "2", "3"]
    assert [e["changes"] for e in events] == [
        [{"field": "text", "after": f"note {i}"}] for i in (1, 2, 3)
    ]
    assert len({e["event_id"] for e in events}) == 3
    client.record_built(events)  # what the relay does: the full check accepts every row
    with context(actor=USER), factory() as session:
        session.add_all([Note(id=4, text="fine"), Note(id=5, text="nul \x00 inside")])
        with pytest.raises(InvalidEvent):
            session.commit()
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(Note)).scalar() == 3
        count = sa.select(sa.func.count()).select_from(sa.table(OUTBOX_TABLE))
        assert conn.execute(count).scalar() == 3
    engine.dispose()


def test_the_relay_sets_a_bad_row_aside_and_moves_the_rows_behind_it(
    client: Client, tmp_path: Path
) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'relay.sqlite3'}")
    metadata = sa.MetaData()
    table = outbox_table(metadata)
    Base.metadata.create_all(engine)
    metadata.create_all(engine)
    capture = SQLAlchemyCapture(client)
    capture.track(Note, fields=["text"])
    factory = sessionmaker(engine)
    capture.install(factory)
    with context(actor=USER), factory() as session:
        session.add(Note(id=1, text="first"))
        session.commit()
    good = client.build_event("note.updated", target={"type": "note", "id": "9"})
    with engine.begin() as conn:  # rows written by something else: not JSON, a broken rule
        conn.execute(sa.insert(table), [{"event": "{not json"}])
        conn.execute(
            sa.insert(table), [{"event": orjson.dumps({**good, "action": "Bad!"}).decode()}]
        )
    with context(actor=USER), factory() as session:
        session.add(Note(id=2, text="second"))
        session.commit()
    relay = capture.start_relay(engine, poll_interval=60.0)
    relay.drain()
    capture.close()
    assert client.pending() == 2 and relay.refused == 2
    refused = client.rejected()
    assert [r.code for r in refused] == ["invalid_event", "invalid_event"]
    assert refused[0].event == {"unparsed": "{not json"} and "not JSON" in refused[0].reason
    assert refused[1].event_id == good["event_id"] and "/action" in refused[1].reason
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(table)).scalar() == 0
    engine.dispose()
