"""What only the PostgreSQL store promises, on the real server: privileges, triggers that
hold for the owner, forced row-level security per log, the advisory-lock lease, migrations.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from indelible.core.entry import GENESIS_PREV_HASH
from indelible.core.tiles import TileAppender
from indelible.errors import ConfigError, NotFound, StoreError, StoreLocked
from indelible.storage import CheckpointRow, Store, open_store
from indelible.storage.base import ApiKeyRow
from indelible.storage.postgres import INDELIBLE_LOCK_SPACE
from tests import pg
from tests.storage.test_contract import NOW, append_rows, make_rows


@pytest.fixture
def db(pg_database: pg.Database) -> pg.Database:
    open_store(pg_database.owner_url, service_role=pg_database.service).close()
    return pg_database


@pytest.fixture
def filled(db: pg.Database) -> Iterator[tuple[Store, int, int]]:
    """The service's store with two logs of 5 entries each (with personal values and an API
    key), a checkpoint on the first."""
    store = open_store(db.service_url)
    ids = []
    for name in ("acme", "globex"):
        info = store.create_log(name, f"example.com/{name}", "vkey", NOW)
        store.acquire_writer(info.log_id, wait=False)
        rows = make_rows(0, 5, GENESIS_PREV_HASH, personal=True)
        append_rows(store, info.log_id, rows, TileAppender(0, {}))
        ids.append(info.log_id)
        store.add_api_key(ApiKeyRow(f"{info.log_id:016x}", info.log_id, "ci", "writer", b"h", NOW))
    store.add_checkpoint(ids[0], CheckpointRow(5, b"\x01" * 32, "note", NOW))
    yield store, ids[0], ids[1]
    store.close()


def _as(url: str, log_id: int | None = None) -> psycopg.Connection[tuple[object, ...]]:
    conn = psycopg.connect(url, autocommit=True, options="-c search_path=indelible")
    if log_id is not None:
        conn.execute("SELECT set_config('indelible.log_id', %s, false)", (str(log_id),))
    return conn


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE entries SET actor_id = 'mallory'",
        "DELETE FROM entries",
        "TRUNCATE entries",
        "UPDATE checkpoints SET note = 'forged'",
        "DELETE FROM checkpoints",
        "TRUNCATE checkpoints CASCADE",
        "TRUNCATE entry_refs",
    ],
)
def test_the_service_role_may_not_rewrite_the_log(
    db: pg.Database, filled: tuple[Store, int, int], statement: str
) -> None:
    _, acme, _ = filled
    with (
        _as(db.service_url, acme) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"),
    ):
        conn.execute(statement)
    with _as(db.admin_url, acme) as conn:
        assert conn.execute("SELECT count(*) FROM entries").fetchone() == (10,)


@pytest.mark.parametrize(
    ("statement", "message"),
    [
        ("UPDATE entries SET actor_id = 'mallory'", "entries are append-only"),
        ("DELETE FROM entries WHERE seq = 0", "entries are append-only"),
        ("TRUNCATE entries CASCADE", "entries are append-only"),
        ("UPDATE checkpoints SET note = 'forged'", "checkpoints are append-only"),
        ("TRUNCATE checkpoints CASCADE", "append-only"),
        ("UPDATE personal_values SET value = 'x'", "never rewritten"),
        ("TRUNCATE personal_values", "erased one by one"),
        ("DELETE FROM api_keys", "never deleted"),
    ],
)
def test_triggers_refuse_rewrites_even_for_the_owner(
    db: pg.Database, filled: tuple[Store, int, int], statement: str, message: str
) -> None:
    _, acme, _ = filled
    with _as(db.owner_url, acme) as conn, pytest.raises(psycopg.Error, match=message):
        conn.execute(statement)
    with _as(db.admin_url) as conn:  # the superuser sees every log
        assert conn.execute("SELECT count(*) FROM entries").fetchone() == (10,)
        assert conn.execute("SELECT count(*) FROM checkpoints").fetchone() == (1,)


def test_row_level_security_is_forced_per_log(
    db: pg.Database, filled: tuple[Store, int, int]
) -> None:
    store, acme, globex = filled
    for url in (db.service_url, db.owner_url):  # the owner is held to the policy too
        with _as(url) as conn:  # no log named: nothing visible, nothing writable
            assert conn.execute("SELECT count(*) FROM entries").fetchone() == (0,)
            assert conn.execute("SELECT count(*) FROM tiles").fetchone() == (0,)
        with _as(url, globex) as conn:
            assert conn.execute("SELECT DISTINCT log_id FROM entries").fetchall() == [(globex,)]
            assert conn.execute("SELECT count(*) FROM checkpoints").fetchone() == (0,)
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
                conn.execute(
                    "INSERT INTO checkpoints (log_id, size, root, note, created_at_ms) "
                    "VALUES (%s, 9, '\\x00'::bytea, 'x', 0)",
                    (acme,),
                )
    # the store itself scopes every read: each log sees its own rows only
    assert [e.seq for e in store.iter_entries(globex)] == [0, 1, 2, 3, 4]
    assert store.latest_checkpoint(globex) is None
    assert store.latest_checkpoint(acme) is not None


def _kill_lease_session(db: pg.Database, log_id: int) -> None:
    """Terminate the session holding the log's lease (a crash, a failover, a cut network)."""
    with _as(db.admin_url) as admin:
        killed = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_locks "
            "WHERE locktype = 'advisory' AND classid = %s AND objid = %s AND granted",
            (INDELIBLE_LOCK_SPACE, log_id),
        ).fetchall()
    assert killed == [(True,)]


def test_the_lease_is_an_advisory_lock_held_until_the_session_ends(
    db: pg.Database, filled: tuple[Store, int, int]
) -> None:
    store, acme, _ = filled
    other = open_store(db.service_url)
    try:
        with pytest.raises(StoreLocked):
            other.acquire_writer(acme, wait=False)
        _kill_lease_session(db, acme)
        other.acquire_writer(acme, wait=False)  # the lock went with the session: free now
        more = make_rows(5, 1, store.get_entry(acme, 4).leaf_hash)
        with pytest.raises(StoreError, match="terminating connection"):  # found out on use
            store.append(acme, 5, more, {})
        with pytest.raises(StoreLocked):  # the first store cannot take it back, nor write
            store.append(acme, 5, more, {})
        append_rows(other, acme, more, TileAppender(5, other.get_tiles(acme, [(0, 0)])))
        assert store.tree_size(acme) == 6
    finally:
        other.close()


def test_a_lost_lease_is_taken_again_and_the_size_guard_still_holds(
    db: pg.Database, filled: tuple[Store, int, int]
) -> None:
    store, acme, _ = filled
    _kill_lease_session(db, acme)
    more = make_rows(5, 2, store.get_entry(acme, 4).leaf_hash)
    with pytest.raises(StoreError, match="terminating connection"):  # found out on use
        store.append(acme, 5, more, {})
    with pytest.raises(StoreError, match="expected 4"):  # retaken, but the log is at 5
        store.append(acme, 4, more, {})
    store.append(acme, 5, more, {})
    assert store.tree_size(acme) == 7
    other = open_store(db.service_url)
    try:
        with pytest.raises(StoreLocked):
            other.acquire_writer(acme, wait=False)
    finally:
        other.close()


def test_the_service_role_cannot_migrate_and_says_who_can(pg_database: pg.Database) -> None:
    with pytest.raises(StoreError, match="schema's owner"):
        open_store(pg_database.service_url)
    with pytest.raises(NotFound, match="indelible init"):
        open_store(pg_database.owner_url, create=False)


def test_a_missing_service_role_is_named(pg_database: pg.Database) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        open_store(pg_database.owner_url, service_role="no_such_role_here")


def test_an_outdated_schema_is_refused_without_migrating(db: pg.Database) -> None:
    with _as(db.admin_url) as conn:
        conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match="version 2"):
        open_store(db.service_url, migrate=False)


def test_a_password_never_appears_in_messages(pg_database: pg.Database) -> None:
    url = pg_database.server.url(user="nobody", dbname=pg_database.name).replace(
        "nobody@", "nobody:hunter2secret@"
    )
    with pytest.raises(StoreError) as info:
        open_store(url)
    assert "hunter2secret" not in info.value.message and "***" in info.value.message


def test_a_server_without_fsync_is_refused() -> None:
    if pg.binaries() is None:
        pg.unavailable("initdb and pg_ctl are not installed, to start a server with fsync = off")
    with pg.own_cluster(fsync=False) as srv, pytest.raises(StoreError, match="fsync = off"):
        open_store(srv.url())
