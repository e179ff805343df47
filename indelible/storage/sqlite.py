"""The embedded default store: one SQLite file in WAL mode with ``synchronous=FULL``.

Life of an entry in this store (see docs/guarantees.md):

1. The sequencer thread holds the log's write lease: an exclusive ``flock`` on
   ``<db>.log<N>.lock``, so a second process cannot write the same log.
2. ``append`` opens ``BEGIN IMMEDIATE`` (SQLite's write lock), checks the log's size is
   the one the sequencer expects, inserts the entries, their personal values and the changed
   tiles, and ``COMMIT``s. With WAL and ``synchronous=FULL`` the commit returns only after
   the WAL is fsync'd: the entries are *sequenced* and *integrated* at once.
3. Only then does the sequencer hand out receipts. A crash before step 2's COMMIT loses the
   whole batch and nobody was told it was stored.
4. The publisher later signs a checkpoint over the tiles' root and inserts it: *published*.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from indelible.core.entry import PersonalValue
from indelible.errors import DuplicateEventId, NotFound, StoreError, StoreLocked
from indelible.storage.base import (
    AnchorRow,
    ApiKeyRow,
    CheckpointRow,
    DeliveryRow,
    EntryQuery,
    EntryRow,
    LeafRow,
    LogInfo,
)
from indelible.storage.querysql import (
    ANCHOR_COLUMNS,
    DELIVERY_COLUMNS,
    ENTRY_COLUMNS,
    KEY_COLUMNS,
    alert_state_params,
    anchor_row,
    delivery_row,
    entry_row,
    group_personal,
    group_refs,
    key_row,
    key_values,
    migrations,
    where_clause,
)

__all__ = ["SQLiteStore"]

log = logging.getLogger("indelible.storage")

# The writer's page cache, in KiB. SQLite's default (2 MiB) holds little of the lookup indexes
# once a log has some 100,000 entries (measured about +10% for batched appends at 300,000).
# Readers keep the default: there is one reader connection per thread.
WRITER_CACHE_KIB = 65_536
WAL_CHECKPOINT_INTERVAL = 1.0  # seconds
WAL_SAFETY_PAGES = 20_000  # 160 MiB of 8 KiB pages

_INSERT_ENTRY = (
    f"INSERT INTO entries (log_id, {ENTRY_COLUMNS}) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_PERSONAL = (
    "INSERT INTO personal_values (log_id, seq, pointer, salt, value) VALUES (?, ?, ?, ?, ?)"
)
_INSERT_REF = "INSERT INTO entry_refs (log_id, ref_type, ref_id, seq) VALUES (?, ?, ?, ?)"
_UPSERT_TILE = (
    "INSERT INTO tiles (log_id, level, idx, hashes) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (log_id, level, idx) DO UPDATE SET hashes = excluded.hashes"
)
_SIZE = "SELECT COALESCE(MAX(seq) + 1, 0) FROM entries WHERE log_id = ?"
_CHUNK = 2000


def _migrations() -> list[tuple[int, str]]:
    return migrations("migrations")


class SQLiteStore:
    """A store in one SQLite file. Thread-safe: one write connection, a reader per thread."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        create: bool = True,
        migrate: bool = True,
        busy_timeout: float = 30.0,
    ) -> None:
        self.path = Path(path)
        self._busy_timeout = busy_timeout
        self.url = f"sqlite:///{self.path}"
        if not create and not self.path.exists():
            raise NotFound(f"no Indelible store at {self.path} (run `indelible init` first)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._write_lock = threading.Lock()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._leases: dict[int, int] = {}
        self._writer = self._connect()
        # WAL pages are copied back into the database by a thread of its own while a write
        # lease is held (_checkpoint_loop), not by the commit that crosses SQLite's default
        # threshold: with batched appends that was nearly every commit (measured: +24% events/s
        # building a 300,000-entry log). The commit still checkpoints past this many pages, so
        # the WAL stays bounded if that thread cannot keep up.
        self._writer.execute(f"PRAGMA wal_autocheckpoint={WAL_SAFETY_PAGES}")
        self._writer.execute(f"PRAGMA cache_size=-{WRITER_CACHE_KIB}")
        self._checkpointer: threading.Thread | None = None
        self._stop_checkpointer = threading.Event()
        if migrate:
            self._migrate()

    # ---- connections
    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=self._busy_timeout
            )
            # Leaves are ~0.5-1 KiB. Measured here: 8 KiB pages make batched inserts ~1.5x
            # cheaper than 4 KiB, while one-event commits stay as cheap (16 KiB pages cost
            # them ~40% more: every commit writes whole pages to the WAL).
            # (Takes effect only when the file is created, before WAL is switched on.)
            conn.execute("PRAGMA page_size=8192")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open SQLite store {self.path}: {exc}") from exc
        return conn

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def _migrate(self) -> None:
        with self._write_lock:
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                has_meta = conn.execute(
                    "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'"
                ).fetchone()
                version = 0
                if has_meta:
                    row = conn.execute(
                        "SELECT value FROM meta WHERE key='schema_version'"
                    ).fetchone()
                    version = int(row[0]) if row else 0
                for number, script in _migrations():
                    if number > version:
                        for statement in _split_sql(script):
                            conn.execute(statement)
                        conn.execute(
                            "INSERT INTO meta (key, value) VALUES ('schema_version', ?) "
                            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                            (str(number),),
                        )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    # ---- logs
    def create_log(self, name: str, origin: str, vkey: str, created_at_ms: int) -> LogInfo:
        with self._write_lock:
            try:
                cur = self._writer.execute(
                    "INSERT INTO logs (name, origin, vkey, created_at_ms) VALUES (?, ?, ?, ?)",
                    (name, origin, vkey, created_at_ms),
                )
            except sqlite3.IntegrityError as exc:
                raise StoreError(f"log {name!r} or origin {origin!r} already exists") from exc
        assert cur.lastrowid is not None
        return LogInfo(cur.lastrowid, name, origin, vkey, created_at_ms)

    def get_log(self, name: str) -> LogInfo:
        row = (
            self._reader()
            .execute(
                "SELECT log_id, name, origin, vkey, created_at_ms FROM logs WHERE name = ?",
                (name,),
            )
            .fetchone()
        )
        if row is None:
            raise NotFound(f"no log named {name!r}")
        return LogInfo(*row)

    def list_logs(self) -> list[LogInfo]:
        rows = self._reader().execute(
            "SELECT log_id, name, origin, vkey, created_at_ms FROM logs ORDER BY log_id"
        )
        return [LogInfo(*row) for row in rows]

    # ---- writer side
    def acquire_writer(self, log_id: int, *, wait: bool) -> None:
        if log_id in self._leases:
            return
        fd = os.open(f"{self.path}.log{log_id}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError as exc:
            os.close(fd)
            raise StoreLocked(
                f"log {log_id} in {self.path} is being written by another process"
            ) from exc
        self._leases[log_id] = fd
        if self._checkpointer is None:
            self._checkpointer = threading.Thread(
                target=self._checkpoint_loop, name="indelible-wal-checkpoint", daemon=True
            )
            self._checkpointer.start()

    def _checkpoint_loop(self) -> None:
        """Every WAL_CHECKPOINT_INTERVAL seconds, a passive checkpoint on a connection of its
        own: it copies committed pages without blocking the writer or the readers."""
        conn = self._connect()
        try:
            while not self._stop_checkpointer.wait(WAL_CHECKPOINT_INTERVAL):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:  # the commit path still checkpoints past the limit
                    log.warning("WAL checkpoint of %s failed: %s", self.path, exc)
        finally:
            conn.close()

    def release_writer(self, log_id: int) -> None:
        fd = self._leases.pop(log_id, None)
        if fd is not None:
            os.close(fd)  # closing the descriptor releases the flock

    def append(
        self,
        log_id: int,
        expected_size: int,
        entries: Sequence[EntryRow],
        tiles: Mapping[tuple[int, int], bytes],
    ) -> None:
        if log_id not in self._leases:
            raise StoreError(f"append to log {log_id} without holding its write lease")
        rows = [(log_id, e.seq, e.leaf, e.leaf_hash, *e.index) for e in entries]
        personal = [
            (log_id, e.seq, p.pointer, p.salt, p.value) for e in entries for p in e.personal
        ]
        refs = [(log_id, kind, ref, e.seq) for e in entries for kind, ref in e.refs]
        tile_rows = [(log_id, level, index, data) for (level, index), data in tiles.items()]
        with self._write_lock:
            conn = self._writer
            try:
                conn.execute("BEGIN IMMEDIATE")
                (size,) = conn.execute(_SIZE, (log_id,)).fetchone()
                if size != expected_size:
                    raise StoreError(
                        f"log {log_id} has {size} entries, the sequencer expected "
                        f"{expected_size}: another writer moved it"
                    )
                conn.executemany(_INSERT_ENTRY, rows)
                if personal:
                    conn.executemany(_INSERT_PERSONAL, personal)
                if refs:
                    conn.executemany(_INSERT_REF, refs)
                conn.executemany(_UPSERT_TILE, tile_rows)
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.IntegrityError) and "event_id" in str(exc):
                    raise DuplicateEventId("an event_id in the batch is already stored") from exc
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"append to {self.path} failed: {exc}") from exc
                raise

    def add_checkpoint(self, log_id: int, row: CheckpointRow) -> None:
        with self._write_lock:
            try:
                self._writer.execute(
                    "INSERT INTO checkpoints (log_id, size, root, note, created_at_ms) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (log_id, row.size, row.root, row.note, row.created_at_ms),
                )
            except sqlite3.Error as exc:
                raise StoreError(f"cannot store checkpoint of size {row.size}: {exc}") from exc

    # ---- reads
    def tree_size(self, log_id: int) -> int:
        (size,) = self._reader().execute(_SIZE, (log_id,)).fetchone()
        return int(size)

    def get_tile(self, log_id: int, level: int, index: int) -> bytes:
        row = (
            self._reader()
            .execute(
                "SELECT hashes FROM tiles WHERE log_id = ? AND level = ? AND idx = ?",
                (log_id, level, index),
            )
            .fetchone()
        )
        if row is None:
            raise NotFound(f"no tile at level {level}, index {index}")
        return bytes(row[0])

    def get_tiles(
        self, log_id: int, keys: Sequence[tuple[int, int]]
    ) -> dict[tuple[int, int], bytes]:
        found: dict[tuple[int, int], bytes] = {}
        conn = self._reader()
        for level, index in keys:
            row = conn.execute(
                "SELECT hashes FROM tiles WHERE log_id = ? AND level = ? AND idx = ?",
                (log_id, level, index),
            ).fetchone()
            if row is not None:
                found[(level, index)] = bytes(row[0])
        return found

    def tile_keys(self, log_id: int) -> list[tuple[int, int]]:
        rows = self._reader().execute(
            "SELECT level, idx FROM tiles WHERE log_id = ? ORDER BY level, idx", (log_id,)
        )
        return [(level, index) for level, index in rows]

    def _personal(self, log_id: int, start: int, end: int) -> dict[int, tuple[PersonalValue, ...]]:
        return group_personal(
            self._reader().execute(
                "SELECT seq, pointer, salt, value FROM personal_values "
                "WHERE log_id = ? AND seq >= ? AND seq < ? ORDER BY seq, pointer",
                (log_id, start, end),
            )
        )

    def _personal_of(
        self, log_id: int, seqs: Sequence[int]
    ) -> dict[int, tuple[PersonalValue, ...]]:
        marks = ",".join("?" * len(seqs))
        return group_personal(
            self._reader().execute(
                "SELECT seq, pointer, salt, value FROM personal_values "
                f"WHERE log_id = ? AND seq IN ({marks}) ORDER BY seq, pointer",
                (log_id, *seqs),
            )
        )

    def get_entry(self, log_id: int, seq: int) -> EntryRow:
        row = (
            self._reader()
            .execute(
                f"SELECT {ENTRY_COLUMNS} FROM entries WHERE log_id = ? AND seq = ?",
                (log_id, seq),
            )
            .fetchone()
        )
        if row is None:
            raise NotFound(f"no entry at seq {seq}")
        return entry_row(row, self._personal(log_id, seq, seq + 1).get(seq, ()))

    def find_event_ids(self, log_id: int, event_ids: Sequence[str]) -> dict[str, EntryRow]:
        found: dict[str, EntryRow] = {}
        conn = self._reader()
        ids = list(dict.fromkeys(event_ids))
        for at in range(0, len(ids), 500):
            part = ids[at : at + 500]
            marks = ",".join("?" * len(part))
            rows = conn.execute(
                f"SELECT {ENTRY_COLUMNS} FROM entries WHERE log_id = ? AND event_id IN ({marks})",
                (log_id, *part),
            ).fetchall()
            personal = self._personal_of(log_id, [row[0] for row in rows]) if rows else {}
            for row in rows:
                found[row[3]] = entry_row(row, personal.get(row[0], ()))
        return found

    def iter_entries(
        self, log_id: int, start: int = 0, end: int | None = None
    ) -> Iterator[EntryRow]:
        conn = self._reader()
        stop = end if end is not None else self.tree_size(log_id)
        at = start
        while at < stop:
            upto = min(at + _CHUNK, stop)
            rows = conn.execute(
                f"SELECT {ENTRY_COLUMNS} FROM entries WHERE log_id = ? AND seq >= ? AND seq < ? "
                "ORDER BY seq",
                (log_id, at, upto),
            ).fetchall()
            personal = self._personal(log_id, at, upto)
            refs = self.get_refs(log_id, at, upto)
            for row in rows:
                entry = entry_row(row, personal.get(row[0], ()))
                yield replace(entry, refs=refs[row[0]]) if row[0] in refs else entry
            at = upto

    def read_leaves(self, log_id: int, start: int, end: int) -> list[LeafRow]:
        rows = (
            self._reader()
            .execute(
                "SELECT seq, received_at_ms, leaf FROM entries "
                "WHERE log_id = ? AND seq >= ? AND seq < ? ORDER BY seq",
                (log_id, start, end),
            )
            .fetchall()
        )
        if not rows:
            return []
        personal = self._personal(log_id, start, end)
        return [(seq, at, leaf, personal.get(seq, ())) for seq, at, leaf in rows]

    def latest_checkpoint(self, log_id: int) -> CheckpointRow | None:
        row = (
            self._reader()
            .execute(
                "SELECT size, root, note, created_at_ms FROM checkpoints WHERE log_id = ? "
                "ORDER BY size DESC LIMIT 1",
                (log_id,),
            )
            .fetchone()
        )
        return None if row is None else CheckpointRow(row[0], bytes(row[1]), row[2], row[3])

    def get_checkpoint(self, log_id: int, size: int) -> CheckpointRow:
        row = (
            self._reader()
            .execute(
                "SELECT size, root, note, created_at_ms FROM checkpoints "
                "WHERE log_id = ? AND size = ?",
                (log_id, size),
            )
            .fetchone()
        )
        if row is None:
            raise NotFound(f"no checkpoint of size {size}")
        return CheckpointRow(row[0], bytes(row[1]), row[2], row[3])

    def list_checkpoints(self, log_id: int) -> list[CheckpointRow]:
        rows = self._reader().execute(
            "SELECT size, root, note, created_at_ms FROM checkpoints WHERE log_id = ? "
            "ORDER BY size",
            (log_id,),
        )
        return [CheckpointRow(r[0], bytes(r[1]), r[2], r[3]) for r in rows]

    # ---- anchors
    def add_anchor(self, log_id: int, row: AnchorRow) -> None:
        with self._write_lock:
            try:
                self._writer.execute(
                    "INSERT INTO anchors (log_id, size, kind, authority, evidence, created_at_ms) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (log_id, row.size, row.kind, row.authority, row.evidence, row.created_at_ms),
                )
            except sqlite3.Error as exc:
                raise StoreError(
                    f"cannot store the {row.kind} anchor of size {row.size}: {exc}"
                ) from exc

    def list_anchors(
        self, log_id: int, *, size: int | None = None, kind: str | None = None
    ) -> list[AnchorRow]:
        rows = self._reader().execute(
            f"SELECT {ANCHOR_COLUMNS} FROM anchors WHERE log_id = ? "
            "AND (? IS NULL OR size = ?) AND (? IS NULL OR kind = ?) "
            "ORDER BY size, kind, authority",
            (log_id, size, size, kind, kind),
        )
        return [anchor_row(row) for row in rows]

    def latest_anchor(self, log_id: int, kind: str, authority: str) -> AnchorRow | None:
        row = (
            self._reader()
            .execute(
                f"SELECT {ANCHOR_COLUMNS} FROM anchors "
                "WHERE log_id = ? AND kind = ? AND authority = ? ORDER BY size DESC LIMIT 1",
                (log_id, kind, authority),
            )
            .fetchone()
        )
        return None if row is None else anchor_row(row)

    # ---- queries
    def query_entries(self, log_id: int, query: EntryQuery) -> list[EntryRow]:
        where, params = where_clause(log_id, query, "?")
        order = "DESC" if query.descending else "ASC"
        rows = (
            self._reader()
            .execute(
                f"SELECT {ENTRY_COLUMNS} FROM entries WHERE {where} ORDER BY seq {order} LIMIT ?",
                (*params, max(0, query.limit)),
            )
            .fetchall()
        )
        personal = self._personal_of(log_id, [row[0] for row in rows]) if rows else {}
        return [entry_row(row, personal.get(row[0], ())) for row in rows]

    def count_entries(self, log_id: int, query: EntryQuery) -> int:
        where, params = where_clause(log_id, query, "?")
        (count,) = (
            self._reader().execute(f"SELECT COUNT(*) FROM entries WHERE {where}", params).fetchone()
        )
        return int(count)

    def get_refs(self, log_id: int, start: int, end: int) -> dict[int, tuple[tuple[str, str], ...]]:
        rows = self._reader().execute(
            "SELECT seq, ref_type, ref_id FROM entry_refs "
            "WHERE log_id = ? AND seq >= ? AND seq < ?",
            (log_id, start, end),
        )
        return group_refs(rows)

    # ---- access
    def add_api_key(self, row: ApiKeyRow) -> None:
        with self._write_lock:
            try:
                self._writer.execute(
                    f"INSERT INTO api_keys ({KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    key_values(row),
                )
            except sqlite3.Error as exc:
                raise StoreError(f"cannot store API key {row.key_id}: {exc}") from exc

    def get_api_key(self, key_id: str) -> ApiKeyRow:
        row = (
            self._reader()
            .execute(f"SELECT {KEY_COLUMNS} FROM api_keys WHERE key_id = ?", (key_id,))
            .fetchone()
        )
        if row is None:
            raise NotFound(f"no API key {key_id!r}")
        return key_row(row)

    def list_api_keys(self, log_id: int | None = None) -> list[ApiKeyRow]:
        if log_id is None:
            rows = self._reader().execute(
                f"SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at_ms, key_id"
            )
        else:
            rows = self._reader().execute(
                f"SELECT {KEY_COLUMNS} FROM api_keys WHERE log_id = ? "
                "ORDER BY created_at_ms, key_id",
                (log_id,),
            )
        return [key_row(row) for row in rows]

    def revoke_api_key(self, key_id: str, at_ms: int) -> bool:
        with self._write_lock:
            try:
                cur = self._writer.execute(
                    "UPDATE api_keys SET revoked_at_ms = ? "
                    "WHERE key_id = ? AND revoked_at_ms IS NULL",
                    (at_ms, key_id),
                )
            except sqlite3.Error as exc:
                raise StoreError(f"cannot revoke API key {key_id}: {exc}") from exc
        return cur.rowcount == 1

    def get_log_settings(self, log_id: int) -> dict[str, str]:
        rows = self._reader().execute(
            "SELECT name, value FROM log_settings WHERE log_id = ? ORDER BY name", (log_id,)
        )
        return {name: value for name, value in rows}

    def set_log_setting(self, log_id: int, name: str, value: str) -> None:
        with self._write_lock:
            try:
                self._writer.execute(
                    "INSERT INTO log_settings (log_id, name, value) VALUES (?, ?, ?) "
                    "ON CONFLICT (log_id, name) DO UPDATE SET value = excluded.value",
                    (log_id, name, value),
                )
            except sqlite3.Error as exc:
                raise StoreError(f"cannot store setting {name}: {exc}") from exc

    # ---- alerts
    def load_alert_state(self, log_id: int) -> dict[str, str]:
        rows = self._reader().execute(
            "SELECT key, value FROM alert_state WHERE log_id = ?", (log_id,)
        )
        return {key: value for key, value in rows}

    def save_alert_state(
        self,
        log_id: int,
        changes: Mapping[str, str | None],
        deliveries: Sequence[DeliveryRow] = (),
    ) -> None:
        upserts, deletes, rows = alert_state_params(log_id, changes, deliveries)
        with self._write_lock:
            conn = self._writer
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(
                    "INSERT INTO alert_state (log_id, key, value) VALUES (?, ?, ?) "
                    "ON CONFLICT (log_id, key) DO UPDATE SET value = excluded.value",
                    upserts,
                )
                conn.executemany("DELETE FROM alert_state WHERE log_id = ? AND key = ?", deletes)
                conn.executemany(
                    f"INSERT INTO alert_deliveries (log_id, {DELIVERY_COLUMNS}) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (log_id, alert_id, sink) DO NOTHING",
                    rows,
                )
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"cannot store the alert state: {exc}") from exc
                raise

    def due_deliveries(self, log_id: int, now_ms: int, limit: int) -> list[DeliveryRow]:
        rows = self._reader().execute(
            f"SELECT {DELIVERY_COLUMNS} FROM alert_deliveries WHERE log_id = ? "
            "AND status = 'pending' AND next_attempt_ms <= ? "
            "ORDER BY next_attempt_ms, seq, sink LIMIT ?",
            (log_id, now_ms, limit),
        )
        return [delivery_row(row) for row in rows]

    def update_delivery(self, log_id: int, row: DeliveryRow) -> None:
        with self._write_lock:
            try:
                self._writer.execute(
                    "UPDATE alert_deliveries SET status = ?, attempts = ?, next_attempt_ms = ?, "
                    "last_error = ?, updated_at_ms = ? "
                    "WHERE log_id = ? AND alert_id = ? AND sink = ?",
                    (
                        row.status,
                        row.attempts,
                        row.next_attempt_ms,
                        row.last_error,
                        row.updated_at_ms,
                        log_id,
                        row.alert_id,
                        row.sink,
                    ),
                )
            except sqlite3.Error as exc:
                raise StoreError(f"cannot update the delivery of {row.alert_id}: {exc}") from exc

    def list_deliveries(
        self, log_id: int, *, status: str | None = None, limit: int = 100
    ) -> list[DeliveryRow]:
        rows = self._reader().execute(
            f"SELECT {DELIVERY_COLUMNS} FROM alert_deliveries WHERE log_id = ? "
            "AND (? IS NULL OR status = ?) ORDER BY seq DESC, sink LIMIT ?",
            (log_id, status, status, limit),
        )
        return [delivery_row(row) for row in rows]

    def count_deliveries(self, log_id: int) -> dict[str, int]:
        rows = self._reader().execute(
            "SELECT status, COUNT(*) FROM alert_deliveries WHERE log_id = ? GROUP BY status",
            (log_id,),
        )
        return {status: int(count) for status, count in rows}

    def close(self) -> None:
        if self._checkpointer is not None:
            self._stop_checkpointer.set()
            self._checkpointer.join()
            self._checkpointer = None
        for log_id in list(self._leases):
            self.release_writer(log_id)
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()
        with self._write_lock:
            self._writer.close()


def _split_sql(script: str) -> list[str]:
    """Split a migration into statements; triggers keep their BEGIN … END; bodies."""
    statements: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        if line.lstrip().startswith("--"):
            continue
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        statements.append(buffer.strip())
    return statements
