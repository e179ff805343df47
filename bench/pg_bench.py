"""The PostgreSQL store against the SQLite store, side by side in one run.

Two figures per call size:

- **engine**: the whole durable append (strict validation, canonical encoding, sealing,
  chain, tiles, the group commit), exactly as the SQLite figure in the main table;
- **store only**: ``Store.append`` of rows sealed beforehand, with their tiles, one
  transaction per call: what the database side costs, without Indelible's Python work.

PostgreSQL is the server named by ``INDELIBLE_BENCH_PG`` (a superuser URL), else the local
one at 127.0.0.1:5432; each measurement gets a database of its own, dropped afterwards.
Both stores commit durably (``synchronous=FULL`` on SQLite; ``synchronous_commit=on`` with
``fsync=on`` on PostgreSQL).
"""

from __future__ import annotations

import argparse
import os
import secrets
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql
from rich.console import Console

from bench.indelible_subjects import IndelibleIngestSubject
from bench.measure import Row, ingest_rate
from bench.peers import Event
from indelible.core.entry import GENESIS_PREV_HASH, seal
from indelible.core.event import validate_batch
from indelible.core.tiles import TileAppender
from indelible.storage import EntryRow, Store, open_store

__all__ = ["pg_rows"]

ADMIN = os.environ.get("INDELIBLE_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")


class _Databases:
    """Fresh databases on the server, each dropped when the next is made or at the end."""

    def __init__(self, admin: str) -> None:
        self.admin = admin
        self.made: list[str] = []

    def fresh(self) -> str:
        """The store URL of a new, empty database."""
        self.drop_all()
        name = f"indelible_bench_{secrets.token_hex(4)}"
        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self.made.append(name)
        info = psycopg.conninfo.conninfo_to_dict(self.admin)
        user = f"{info['user']}@" if info.get("user") else ""
        port = f":{info['port']}" if info.get("port") else ""
        return f"postgresql://{user}{info.get('host', '127.0.0.1')}{port}/{name}"

    def drop_all(self) -> None:
        with psycopg.connect(self.admin, autocommit=True) as conn:
            for name in self.made:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )
        self.made.clear()


def _sealed_batches(events: Sequence[Event], call_size: int) -> list[list[EntryRow]]:
    now = time.time_ns() // 1_000_000
    validated = validate_batch(list(events), now_ms=now)
    rows, prev = [], GENESIS_PREV_HASH
    for seq, event in enumerate(validated):
        sealed = seal(event, seq=seq, received_at_ms=now, prev_hash=prev, random_bytes=os.urandom)
        rows.append(EntryRow(seq, sealed.leaf, sealed.leaf_hash, sealed.index, sealed.personal))
        prev = sealed.leaf_hash
    return [rows[at : at + call_size] for at in range(0, len(rows), call_size)]


def _store_rate(
    open_fresh: Callable[[], Store], batches: list[list[EntryRow]], budget: float
) -> float:
    """Rows per second through ``Store.append`` (tiles computed outside the timed part)."""
    store = open_fresh()
    try:
        info = store.create_log("bench", "bench.example/store", "vkey", 0)
        store.acquire_writer(info.log_id, wait=False)
        appender = TileAppender(0, {})
        done, spent = 0, 0.0
        for batch in batches:
            tiles = appender.append([row.leaf_hash for row in batch])
            started = time.perf_counter()
            store.append(info.log_id, batch[0].seq, batch, tiles)
            spent += time.perf_counter() - started
            done += len(batch)
            if spent >= budget:
                break
        return done / spent if spent else 0.0
    finally:
        store.close()


@contextmanager
def _sqlite_stores(workdir: Path | None) -> Iterator[Callable[[], Store]]:
    with tempfile.TemporaryDirectory(dir=workdir, prefix="store-") as folder:
        count = iter(range(1_000_000))
        yield lambda: open_store(f"sqlite:///{Path(folder) / f'{next(count)}.db'}")


def pg_rows(args: argparse.Namespace, console: Console, events: Sequence[Event]) -> list[Row]:
    """Rows of the side-by-side table: Indelible on PostgreSQL ÷ Indelible on SQLite."""
    try:
        with psycopg.connect(ADMIN, connect_timeout=3) as conn:
            version = conn.execute("SHOW server_version").fetchone()
    except psycopg.Error as exc:
        console.log(f"[red]PostgreSQL figures skipped: no server at {ADMIN}: {exc}")
        return []
    console.log(f"PostgreSQL {version[0] if version else '?'} at {ADMIN}")
    databases = _Databases(ADMIN)
    budget = 1.0 if args.quick else 4.0
    rows: list[Row] = []
    try:
        for call_size in (1, 100, 1000):
            on_pg = IndelibleIngestSubject(store_url=lambda: databases.fresh())
            on_sqlite = IndelibleIngestSubject()
            theirs = ingest_rate(on_sqlite, events, call_size, budget, workdir=args.workdir)
            mine = ingest_rate(on_pg, events, call_size, budget, workdir=args.workdir)
            databases.drop_all()
            console.log(
                f"engine, calls of {call_size}: PostgreSQL {mine:,.0f} events/s, "
                f"SQLite {theirs:,.0f} events/s"
            )
            rows.append(
                Row(
                    f"PostgreSQL store: durable ingest, calls of {call_size}",
                    "events/s",
                    "Indelible on SQLite",
                    theirs,
                    mine,
                )
            )
        count = 30_000 if args.quick else 100_000
        batches = _sealed_batches(events[:count], 1000)
        with _sqlite_stores(args.workdir) as sqlite_fresh:
            theirs = _store_rate(sqlite_fresh, batches, budget)
        mine = _store_rate(lambda: open_store(databases.fresh()), batches, budget)
        databases.drop_all()
        console.log(
            f"store only, batches of 1,000: PostgreSQL {mine:,.0f} rows/s, SQLite {theirs:,.0f}"
        )
        rows.append(
            Row(
                "PostgreSQL store: Store.append only, batches of 1,000",
                "events/s",
                "Indelible on SQLite",
                theirs,
                mine,
            )
        )
    finally:
        databases.drop_all()
    return rows
