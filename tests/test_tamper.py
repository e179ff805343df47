"""Tamper suite: rewrite the store behind Indelible's back; `indelible verify` must name the seq.

Each case drops the append-only triggers through the database's own client (as a database
administrator could), changes something, and runs `indelible verify --checkpoint HELD` where
HELD is a checkpoint taken before the change, as a client or witness would hold it. Every case
runs on SQLite and on PostgreSQL (the real server; each copy a database made from a template).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from indelible.config import load_settings
from indelible.core.event import validate_event
from indelible.service.ingest import Publisher, Sequencer
from indelible.service.logs import open_log
from indelible.storage import open_store
from tests import pg
from tests.conftest import CliResult, run_cli
from tests.factories import billing_event

SIZE = 600  # spans three level-0 tiles
Tamper = Callable[[Any], None]


@dataclass(frozen=True)
class PgCopy:
    """Where a PostgreSQL copy of the pristine log lives."""

    database: pg.Database
    name: str

    def url(self, user: str | None = None) -> str:
        return self.database.server.url(user=user, dbname=self.name)


_PG_COPIES: dict[Path, PgCopy] = {}


class _PgRaw:
    """A superuser's psycopg connection that takes the suite's sqlite3-style ``?`` SQL."""

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(url, autocommit=True, options="-c search_path=indelible")

    def execute(self, statement: str, params: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        return self.conn.execute(statement.replace("?", "%s"), tuple(params))  # type: ignore[arg-type]

    def close(self) -> None:
        self.conn.close()


def _now() -> int:
    return time.time_ns() // 1_000_000


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def pristine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, pg.Database | None]]:
    """A log of SIZE events (some with personal values) and a checkpoint held outside."""
    data = tmp_path_factory.mktemp("pristine") / "data"
    with contextlib.ExitStack() as stack:
        database: pg.Database | None = None
        store: list[str] = []
        if request.param == "postgresql":
            database = stack.enter_context(pg.database(request.getfixturevalue("pg_server")))
            patch = stack.enter_context(pytest.MonkeyPatch.context())
            patch.setenv("INDELIBLE_PG_SERVICE_ROLE", database.service)
            store = ["--store", database.owner_url]
        init = ["init", "--data", str(data), *store, "--origin", "example.com/tamper"]
        assert run_cli(*init).code == 0
        events = [billing_event(n, personal=n % 5 == 0) for n in range(SIZE)]
        source = data.parent / "events.ndjson"
        source.write_text("\n".join(json.dumps(e) for e in events[:400]) + "\n")
        assert run_cli("append", str(source), "--data", str(data), *store).code == 0
        source.write_text(json.dumps(events[400:]))
        assert run_cli("append", str(source), "--data", str(data), *store).code == 0
        held = run_cli("checkpoint", "--data", str(data), *store, "--json")
        (data.parent / "held.checkpoint").write_text(json.loads(held.stdout)["note"])
        yield data, database


@pytest.fixture
def copy(
    pristine: tuple[Path, pg.Database | None], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    source, database = pristine
    data = tmp_path / "data"
    data.mkdir()
    (data / "keys").mkdir()
    if database is None:
        src = sqlite3.connect(source / "indelible.db")
        dst = sqlite3.connect(data / "indelible.db")
        src.backup(dst)
        src.close()
        dst.close()
    for key in (source / "keys").iterdir():
        (data / "keys" / key.name).write_bytes(key.read_bytes())
    (tmp_path / "held.checkpoint").write_bytes((source.parent / "held.checkpoint").read_bytes())
    if database is None:
        yield data
        return
    name = f"{database.name}_{len(_PG_COPIES)}"
    with database.server.admin() as admin:
        admin.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {} OWNER {}").format(
                sql.Identifier(name), sql.Identifier(database.name), sql.Identifier(database.owner)
            )
        )
    _PG_COPIES[data] = PgCopy(database, name)
    monkeypatch.setenv("INDELIBLE_STORE", _PG_COPIES[data].url(database.service))
    try:
        yield data
    finally:
        with database.server.admin() as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def tamper(data: Path, change: Tamper) -> None:
    copy = _PG_COPIES.get(data)
    if copy is not None:
        raw = _PgRaw(copy.url())
        for table, name in raw.execute(
            "SELECT event_object_table, trigger_name FROM information_schema.triggers "
            "WHERE trigger_schema = 'indelible'"
        ).fetchall():
            raw.execute(f'DROP TRIGGER IF EXISTS "{name}" ON "{table}"')
        change(raw)
        raw.close()
        return
    conn = sqlite3.connect(data / "indelible.db", isolation_level=None)
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        conn.execute(f"DROP TRIGGER {name}")
    change(conn)
    conn.close()


def verify(data: Path) -> CliResult:
    held = data.parent / "held.checkpoint"
    return run_cli("verify", "--data", str(data), "--checkpoint", str(held), "--json")


def assert_names_seq(result: CliResult, seq: int, code: str | None = None) -> dict[str, object]:
    assert result.code == 1, result.stdout + result.stderr
    body = json.loads(result.stdout)
    assert body["ok"] is False
    assert body["error"]["details"]["seq"] == seq, body
    assert f"seq {seq}" in body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code, body
    return body


def _leaf(conn: Any, seq: int) -> bytes:
    return bytes(conn.execute("SELECT leaf FROM entries WHERE seq = ?", (seq,)).fetchone()[0])


def test_an_untouched_log_verifies(copy: Path) -> None:
    result = verify(copy)
    assert result.code == 0, result.stdout + result.stderr
    body = json.loads(result.stdout)
    assert body["ok"] is True
    assert body["size"] == SIZE
    assert body["held_checkpoint_sizes"] == [SIZE]


@pytest.mark.parametrize("seq", [0, 1, 255, 256, 437, SIZE - 1])
@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_one_byte_of_a_leaf_edited(copy: Path, seq: int, where: str) -> None:
    def change(conn: Any) -> None:
        leaf = bytearray(_leaf(conn, seq))
        at = {"first": 0, "middle": len(leaf) // 2, "last": len(leaf) - 1}[where]
        leaf[at] ^= 0x01
        conn.execute("UPDATE entries SET leaf = ? WHERE seq = ?", (bytes(leaf), seq))

    tamper(copy, change)
    assert_names_seq(verify(copy), seq, "leaf_mismatch")


def test_a_leaf_edited_with_its_hash_column_recomputed(copy: Path) -> None:
    def change(conn: Any) -> None:
        leaf = _leaf(conn, 300).replace(b'"amount_due"', b'"amount_duE"')
        digest = hashlib.sha256(b"\x00" + leaf).digest()
        conn.execute("UPDATE entries SET leaf = ?, leaf_hash = ? WHERE seq = 300", (leaf, digest))

    tamper(copy, change)
    assert_names_seq(verify(copy), 300)


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("actor_id", "mallory"),
        ("target_id", "INV-999"),
        ("event_type", "invoice.created"),
        ("occurred_at_ms", 1),
        ("received_at_ms", 2),
        ("event_id", "00000000-0000-7000-8000-000000000000"),
        ("outcome", "denied"),
        ("ip", "198.51.100.1"),
        ("leaf_hash", b"\x00" * 32),
    ],
)
def test_an_index_column_edited(copy: Path, column: str, value: object) -> None:
    tamper(
        copy, lambda conn: conn.execute(f"UPDATE entries SET {column} = ? WHERE seq = 77", (value,))
    )
    assert_names_seq(verify(copy), 77, "leaf_mismatch")


@pytest.mark.parametrize("seq", [0, 10, 300])
def test_an_entry_deleted(copy: Path, seq: int) -> None:
    tamper(copy, lambda conn: conn.execute("DELETE FROM entries WHERE seq = ?", (seq,)))
    assert_names_seq(verify(copy), seq)


def test_two_entries_swapped(copy: Path) -> None:
    def change(conn: Any) -> None:
        conn.execute("UPDATE entries SET seq = -1 WHERE seq = 40")
        conn.execute("UPDATE entries SET seq = 40 WHERE seq = 41")
        conn.execute("UPDATE entries SET seq = 41 WHERE seq = -1")

    tamper(copy, change)
    assert_names_seq(verify(copy), 40)


def test_a_forged_entry_inserted_in_the_middle(copy: Path) -> None:
    def change(conn: Any) -> None:
        # shift 200.. up by one and put a well-formed forged entry, chained to 199, at 200
        for (seq,) in conn.execute(
            "SELECT seq FROM entries WHERE seq >= 200 ORDER BY seq DESC"
        ).fetchall():
            conn.execute("UPDATE entries SET seq = ? WHERE seq = ?", (seq + 1, seq))
        row = conn.execute("SELECT * FROM entries WHERE seq = 201").fetchone()
        prev = bytes(conn.execute("SELECT leaf_hash FROM entries WHERE seq = 199").fetchone()[0])
        leaf = json.loads(_leaf(conn, 201))
        leaf["seq"], leaf["prev_hash"] = 200, prev.hex()
        leaf["event"]["event_id"] = "01890000-0000-7000-8000-00000000f00d"
        forged = json.dumps(leaf, sort_keys=True, separators=(",", ":")).encode()
        values = list(row)
        values[1], values[2], values[3] = 200, forged, hashlib.sha256(b"\x00" + forged).digest()
        values[4] = leaf["event"]["event_id"]
        conn.execute(f"INSERT INTO entries VALUES ({','.join('?' * len(values))})", values)

    tamper(copy, change)
    assert_names_seq(verify(copy), 200)


def test_a_forged_entry_appended_at_the_end(copy: Path) -> None:
    def change(conn: Any) -> None:
        row = list(conn.execute("SELECT * FROM entries WHERE seq = ?", (SIZE - 1,)).fetchone())
        leaf = json.loads(_leaf(conn, SIZE - 1))
        leaf["seq"], leaf["prev_hash"] = SIZE, bytes(row[3]).hex()
        leaf["event"]["event_id"] = "01890000-0000-7000-8000-0000000f0f0d"
        forged = json.dumps(leaf, sort_keys=True, separators=(",", ":")).encode()
        row[1], row[2], row[3], row[4] = (
            SIZE,
            forged,
            hashlib.sha256(b"\x00" + forged).digest(),
            leaf["event"]["event_id"],
        )
        conn.execute(f"INSERT INTO entries VALUES ({','.join('?' * len(row))})", row)

    tamper(copy, change)
    assert_names_seq(verify(copy), SIZE)


def test_a_tile_the_tree_does_not_have(copy: Path) -> None:
    tamper(
        copy,
        lambda conn: conn.execute(
            "INSERT INTO tiles (log_id, level, idx, hashes) VALUES (1, 0, 9, ?)", (b"\x00" * 32,)
        ),
    )
    body = assert_names_seq(verify(copy), SIZE, "tree_mismatch")
    assert "level 0 index 9" in body["error"]["message"]


def test_the_tail_truncated_against_a_held_checkpoint(copy: Path) -> None:
    def change(conn: Any) -> None:
        conn.execute("DELETE FROM entries WHERE seq >= ?", (SIZE - 25,))
        conn.execute("DELETE FROM checkpoints")
        conn.execute("DELETE FROM tiles")

    tamper(copy, change)
    body = assert_names_seq(verify(copy), SIZE - 25, "inconsistent_tree")
    assert "truncated" in str(body["error"])


def test_a_personal_value_edited(copy: Path) -> None:
    tamper(
        copy,
        lambda conn: conn.execute(
            "UPDATE personal_values SET value = ? WHERE seq = 35 AND pointer = '/changes/2/after'",
            (b'"attacker@example.com"',),
        ),
    )
    assert_names_seq(verify(copy), 35, "leaf_mismatch")


def test_an_erased_personal_value_still_verifies(copy: Path) -> None:
    tamper(copy, lambda conn: conn.execute("DELETE FROM personal_values WHERE seq = 35"))
    result = verify(copy)
    assert result.code == 0, result.stdout
    assert json.loads(result.stdout)["erased_values"] == 2


def test_a_checkpoint_note_forged(copy: Path) -> None:
    def change(conn: Any) -> None:
        note = conn.execute("SELECT note FROM checkpoints ORDER BY size DESC").fetchone()[0]
        body, signature = note.split("\n\n")
        forged = body.replace(f"\n{SIZE}\n", f"\n{SIZE - 1}\n") + "\n\n" + signature
        conn.execute("UPDATE checkpoints SET note = ? WHERE size = ?", (forged, SIZE))

    tamper(copy, change)
    result = verify(copy)
    assert result.code == 1
    assert json.loads(result.stdout)["error"]["code"] == "invalid_signature"


def test_history_rewritten_and_resigned_with_the_log_key(copy: Path, tmp_path: Path) -> None:
    """An operator with the signing key rebuilds the whole log with one event changed."""
    settings = load_settings({"data": str(copy)})
    original = open_store(settings.store_url, create=False)
    opened = open_log(original, settings.keys_dir, "default", need_signer=True)
    info, signer = opened.info, opened.signer
    original.close()
    assert signer is not None
    pg_copy = _PG_COPIES.get(copy)
    if pg_copy is None:
        os.remove(copy / "indelible.db")
        store = open_store(settings.store_url)
    else:  # the owner drops the schema and builds it again
        with psycopg.connect(pg_copy.url(pg_copy.database.owner), autocommit=True) as owner:
            owner.execute("DROP SCHEMA indelible CASCADE")
        role = pg_copy.database.service
        open_store(pg_copy.url(pg_copy.database.owner), service_role=role).close()
        store = open_store(settings.store_url)
    log = store.create_log(info.name, info.origin, info.vkey, info.created_at_ms)
    sequencer = Sequencer(store, log, clock_ms=_now, random_bytes=os.urandom)
    events = [billing_event(n, personal=n % 5 == 0) for n in range(SIZE)]
    events[123]["changes"][0]["after"] = 1  # the one rewrite
    sequencer.append([validate_event(e, now_ms=_now()) for e in events])
    sequencer.close()
    Publisher(store, log, signer, clock_ms=_now).publish()
    store.close()
    # a self-consistent, correctly signed log: only the held checkpoint can tell
    assert run_cli("verify", "--data", str(copy)).code == 0
    body = assert_names_seq(verify(copy), 0, "inconsistent_tree")
    assert "rewritten" in str(body["error"]["message"])
