"""The store contract (indelible/storage/base.py), run against every store driver.

A new driver joins by adding a parameter to the ``driver`` fixture and a ``raw`` SQL hook.
PostgreSQL runs on the real server (tests/pg.py): the schema is created by its owner role and
the store under test connects as the service role, as in production.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from indelible.core.entry import GENESIS_PREV_HASH, seal
from indelible.core.event import validate_event
from indelible.core.tiles import TileAppender
from indelible.errors import DuplicateEventId, NotFound, StoreError, StoreLocked
from indelible.storage import AnchorRow, CheckpointRow, EntryRow, Store, open_store
from tests import pg
from tests.factories import BASE_MS, billing_event

NOW = BASE_MS + 10_000_000


class Refused(Exception):
    """The database refused a raw statement (any driver)."""


@pytest.fixture(params=["sqlite", "postgresql"])
def driver(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'contract.db'}"
    if request.param == "postgresql":
        db: pg.Database = request.getfixturevalue("pg_database")
        open_store(db.owner_url, service_role=db.service).close()
        request.node.pg_database = db
        return db.service_url
    raise AssertionError(request.param)


@pytest.fixture
def store(driver: str) -> Iterator[Store]:
    opened = open_store(driver)
    yield opened
    opened.close()


@pytest.fixture
def raw(
    driver: str, request: pytest.FixtureRequest
) -> Iterator[Callable[[str, tuple[Any, ...]], Any]]:
    """Execute SQL natively, outside Indelible, as a database administrator would (on
    PostgreSQL: as the superuser, who bypasses row-level security but not the triggers)."""
    if driver.startswith("sqlite:///"):
        conn = sqlite3.connect(driver.removeprefix("sqlite:///"), isolation_level=None)

        def execute(sql: str, params: tuple[Any, ...] = ()) -> Any:
            try:
                return conn.execute(sql, params).fetchall()
            except sqlite3.DatabaseError as exc:
                raise Refused(str(exc)) from exc

        yield execute
        conn.close()
        return
    db: pg.Database = request.node.pg_database
    admin = psycopg.connect(db.admin_url, autocommit=True, options="-c search_path=indelible")

    def execute_pg(sql: str, params: tuple[Any, ...] = ()) -> Any:
        try:
            cur = admin.execute(sql.replace("x'00'", "'\\x00'::bytea"), params)
        except psycopg.Error as exc:
            raise Refused(str(exc)) from exc
        return cur.fetchall() if cur.description else []

    yield execute_pg
    admin.close()


def make_rows(start: int, count: int, prev: bytes, *, personal: bool = False) -> list[EntryRow]:
    rows = []
    for seq in range(start, start + count):
        event = validate_event(billing_event(seq, personal=personal), now_ms=NOW)
        sealed = seal(event, seq=seq, received_at_ms=NOW, prev_hash=prev, random_bytes=os.urandom)
        rows.append(EntryRow(seq, sealed.leaf, sealed.leaf_hash, sealed.index, sealed.personal))
        prev = sealed.leaf_hash
    return rows


def append_rows(store: Store, log_id: int, rows: list[EntryRow], appender: TileAppender) -> None:
    tiles = appender.append([row.leaf_hash for row in rows])
    store.append(log_id, rows[0].seq, rows, tiles)


@pytest.fixture
def log_id(store: Store) -> int:
    info = store.create_log("acme", "example.com/acme", "example.com/acme+00000000+AQ==", NOW)
    store.acquire_writer(info.log_id, wait=False)
    return info.log_id


def test_logs_are_created_and_listed(store: Store) -> None:
    a = store.create_log("a", "example.com/a", "vkey-a", NOW)
    b = store.create_log("b", "example.com/b", "vkey-b", NOW)
    assert store.get_log("a") == a
    assert [log.name for log in store.list_logs()] == ["a", "b"]
    assert b.log_id != a.log_id
    with pytest.raises(StoreError):
        store.create_log("a", "example.com/other", "vkey", NOW)
    with pytest.raises(NotFound):
        store.get_log("missing")


def test_append_writes_exact_bytes_and_reads_them_back(store: Store, log_id: int) -> None:
    rows = make_rows(0, 300, GENESIS_PREV_HASH, personal=True)
    append_rows(store, log_id, rows, TileAppender(0, {}))
    assert store.tree_size(log_id) == 300
    assert list(store.iter_entries(log_id)) == rows
    assert list(store.iter_entries(log_id, 10, 12)) == rows[10:12]
    assert store.get_entry(log_id, 299) == rows[299]
    leaves = [(row.seq, row.index.received_at_ms, row.leaf, row.personal) for row in rows]
    assert store.read_leaves(log_id, 0, 300) == leaves
    assert store.read_leaves(log_id, 10, 12) == leaves[10:12]
    assert all(leaf[3] for leaf in leaves)  # with their personal values
    assert store.read_leaves(log_id, 298, 400) == leaves[298:]  # clipped to the log
    assert store.read_leaves(log_id, 300, 400) == []
    found = store.find_event_ids(log_id, [rows[5].index.event_id, "no-such-id"])
    assert found == {rows[5].index.event_id: rows[5]}
    with pytest.raises(NotFound):
        store.get_entry(log_id, 300)


def test_tiles_hold_the_latest_content(store: Store, log_id: int) -> None:
    appender = TileAppender(0, {})
    rows = make_rows(0, 200, GENESIS_PREV_HASH)
    append_rows(store, log_id, rows, appender)
    more = make_rows(200, 100, rows[-1].leaf_hash)
    append_rows(store, log_id, more, appender)
    assert store.get_tile(log_id, 0, 0) == b"".join(r.leaf_hash for r in (rows + more)[:256])
    assert store.get_tile(log_id, 0, 1) == b"".join(r.leaf_hash for r in more[56:])
    assert store.get_tiles(log_id, [(0, 1), (5, 5)]) == {(0, 1): store.get_tile(log_id, 0, 1)}
    assert store.tile_keys(log_id) == [(0, 0), (0, 1), (1, 0)]
    with pytest.raises(NotFound):
        store.get_tile(log_id, 3, 0)


def test_append_refuses_a_moved_log_and_changes_nothing(store: Store, log_id: int) -> None:
    rows = make_rows(0, 10, GENESIS_PREV_HASH)
    append_rows(store, log_id, rows, TileAppender(0, {}))
    more = make_rows(10, 5, rows[-1].leaf_hash)
    with pytest.raises(StoreError, match="expected"):
        store.append(log_id, 9, more, {})
    assert store.tree_size(log_id) == 10


def test_append_is_all_or_nothing(store: Store, log_id: int) -> None:
    rows = make_rows(0, 10, GENESIS_PREV_HASH)
    append_rows(store, log_id, rows, TileAppender(0, {}))
    clash = make_rows(10, 3, rows[-1].leaf_hash)
    # the third row reuses an event_id already in the log: the whole batch must fail
    clash[2] = EntryRow(12, clash[2].leaf, clash[2].leaf_hash, rows[0].index, ())
    with pytest.raises(DuplicateEventId):
        store.append(log_id, 10, clash, {(0, 0): b"\x00" * 32 * 13})
    assert store.tree_size(log_id) == 10
    assert store.get_tile(log_id, 0, 0) == b"".join(r.leaf_hash for r in rows)


def test_append_needs_the_write_lease(store: Store) -> None:
    info = store.create_log("nolease", "example.com/nolease", "vkey", NOW)
    with pytest.raises(StoreError, match="lease"):
        store.append(info.log_id, 0, make_rows(0, 1, GENESIS_PREV_HASH), {})


def test_write_lease_is_exclusive_across_store_handles(
    driver: str, store: Store, log_id: int
) -> None:
    other = open_store(driver)
    try:
        with pytest.raises(StoreLocked):
            other.acquire_writer(log_id, wait=False)
        store.release_writer(log_id)
        other.acquire_writer(log_id, wait=False)
    finally:
        other.close()


def test_checkpoints_are_keyed_by_size(store: Store, log_id: int) -> None:
    assert store.latest_checkpoint(log_id) is None
    first = CheckpointRow(3, b"\x01" * 32, "note 3", NOW)
    second = CheckpointRow(7, b"\x02" * 32, "note 7", NOW + 1)
    store.add_checkpoint(log_id, first)
    store.add_checkpoint(log_id, second)
    assert store.latest_checkpoint(log_id) == second
    assert store.get_checkpoint(log_id, 3) == first
    assert store.list_checkpoints(log_id) == [first, second]
    with pytest.raises(StoreError):
        store.add_checkpoint(log_id, CheckpointRow(7, b"\x03" * 32, "again", NOW))
    with pytest.raises(NotFound):
        store.get_checkpoint(log_id, 5)


def test_anchors_are_keyed_by_size_kind_and_authority(store: Store, log_id: int) -> None:
    for size in (3, 7):
        store.add_checkpoint(log_id, CheckpointRow(size, bytes([size]) * 32, f"note {size}", NOW))
    tsa3 = AnchorRow(3, "rfc3161", "http://tsa.example/a", b"\x30\x82token", NOW)
    wit3 = AnchorRow(3, "cosignature", "w1+01020304", "\u2014 w1 sig\n".encode(), NOW)
    wit7 = AnchorRow(7, "cosignature", "w1+01020304", b"line 7", NOW + 5)
    other = AnchorRow(7, "cosignature", "w2+0a0b0c0d", b"line w2", NOW + 6)
    for row in (wit7, tsa3, other, wit3):
        store.add_anchor(log_id, row)
    assert store.list_anchors(log_id) == [wit3, tsa3, wit7, other]
    assert store.list_anchors(log_id, size=7) == [wit7, other]
    assert store.list_anchors(log_id, kind="rfc3161") == [tsa3]
    assert store.latest_anchor(log_id, "cosignature", "w1+01020304") == wit7
    assert store.latest_anchor(log_id, "rfc3161", "http://elsewhere") is None
    with pytest.raises(StoreError):  # the same key twice
        store.add_anchor(log_id, AnchorRow(3, "rfc3161", "http://tsa.example/a", b"x", NOW))
    with pytest.raises(StoreError):  # no checkpoint of that size
        store.add_anchor(log_id, AnchorRow(5, "rfc3161", "http://tsa.example/a", b"x", NOW))
    with pytest.raises(StoreError):  # an unknown kind
        store.add_anchor(log_id, AnchorRow(3, "gossip", "http://tsa.example/a", b"x", NOW))
    assert len(store.list_anchors(log_id)) == 4


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE entries SET leaf = x'00' WHERE seq = 1",
        "UPDATE entries SET actor_id = 'mallory' WHERE seq = 1",
        "DELETE FROM entries WHERE seq = 1",
        "DELETE FROM entries",
        "UPDATE checkpoints SET note = 'forged'",
        "DELETE FROM checkpoints",
        "UPDATE anchors SET evidence = x'00'",
        "DELETE FROM anchors",
    ],
)
def test_the_database_refuses_rewrites(
    store: Store, log_id: int, raw: Callable[..., Any], statement: str
) -> None:
    append_rows(store, log_id, make_rows(0, 3, GENESIS_PREV_HASH), TileAppender(0, {}))
    store.add_checkpoint(log_id, CheckpointRow(3, b"\x01" * 32, "note", NOW))
    store.add_anchor(log_id, AnchorRow(3, "rfc3161", "http://tsa", b"token", NOW))
    with pytest.raises(Refused, match="append-only"):
        raw(statement)
    assert store.tree_size(log_id) == 3


def test_api_keys_are_revoked_once_never_deleted_or_rewritten(
    store: Store, raw: Callable[[str, tuple[Any, ...]], Any]
) -> None:
    from indelible.storage.base import ApiKeyRow

    log = store.create_log("acme", "example.com/acme", "vkey", NOW)
    store.add_api_key(ApiKeyRow("00112233445566ff", log.log_id, "ci", "writer", b"h" * 32, NOW))
    assert store.revoke_api_key("00112233445566ff", NOW + 1) is True
    assert store.revoke_api_key("00112233445566ff", NOW + 2) is False
    assert store.get_api_key("00112233445566ff").revoked_at_ms == NOW + 1
    for sql in (
        "DELETE FROM api_keys",
        "UPDATE api_keys SET role = 'admin'",
        "UPDATE api_keys SET secret_hash = x'00'",
    ):
        with pytest.raises(Refused):
            raw(sql, ())
    with pytest.raises(NotFound):
        store.get_api_key("ffffffffffffffff")


def test_alert_state_and_deliveries_are_saved_together_and_kept_per_log(
    store: Store, raw: Callable[..., Any]
) -> None:
    from indelible.storage.base import DeliveryRow

    a = store.create_log("a", "example.com/a", "vkey-a", NOW).log_id
    b = store.create_log("b", "example.com/b", "vkey-b", NOW).log_id
    assert store.load_alert_state(a) == {}
    first = DeliveryRow("alert-1", "hook", 7, b'{"x":1}', next_attempt_ms=NOW, created_at_ms=NOW)
    store.save_alert_state(a, {"cursor": "8", "fs\x1fr\x1fg": '["1.2.3.4"]'}, [first])
    store.save_alert_state(b, {"cursor": "2"})
    assert store.load_alert_state(a) == {"cursor": "8", "fs\x1fr\x1fg": '["1.2.3.4"]'}
    assert store.load_alert_state(b) == {"cursor": "2"}
    # a re-evaluation after a crash enqueues the same delivery again: it is kept as it was
    sent = DeliveryRow("alert-1", "hook", 7, b'{"x":1}', "delivered", 1, NOW, None, NOW, NOW + 5)
    store.update_delivery(a, sent)
    store.save_alert_state(a, {"cursor": "9", "fs\x1fr\x1fg": None}, [first])
    assert store.load_alert_state(a) == {"cursor": "9"}
    assert store.list_deliveries(a) == [sent]
    assert store.list_deliveries(b) == []
    assert store.count_deliveries(a) == {"delivered": 1}
    later = DeliveryRow("alert-2", "mail", 9, b"{}", next_attempt_ms=NOW + 1000, created_at_ms=NOW)
    store.save_alert_state(a, {}, [later])
    assert store.due_deliveries(a, NOW, 10) == []
    assert store.due_deliveries(a, NOW + 1000, 10) == [later]
    store.update_delivery(a, DeliveryRow("alert-2", "mail", 9, b"{}", "dead", 5, 0, "refused"))
    assert [row.status for row in store.list_deliveries(a, status="dead")] == ["dead"]
    assert store.list_deliveries(a, status="dead")[0].last_error == "refused"
    assert store.count_deliveries(a) == {"delivered": 1, "dead": 1}
    with pytest.raises(Refused, match="kept"):
        raw("DELETE FROM alert_deliveries", ())
