"""The production store: PostgreSQL, through psycopg 3.

Life of an entry in this store (see docs/guarantees.md):

1. The sequencer holds the log's write lease: a session-level advisory lock
   (``pg_try_advisory_lock(INDELIBLE_LOCK_SPACE, log_id)``) on a connection of its own, the
   *lease connection*. A second process cannot take it while the first lives; when a
   process dies, its session ends and PostgreSQL releases the lock.
2. ``append`` runs on that same lease connection, so nothing can write the log without the
   lease: one transaction checks the log's size is the one the sequencer expects, inserts the
   entries, their personal values and references (one multi-row ``INSERT … SELECT FROM
   unnest(…)`` per table) and upserts the changed tiles, then ``COMMIT``s. Every connection
   runs with ``synchronous_commit = on`` and the store refuses a server with ``fsync = off``:
   the commit returns only after PostgreSQL flushed its WAL. The entries are *sequenced* and
   *integrated* at once.
3. Only then does the sequencer hand out receipts. A crash before the COMMIT loses the whole
   batch, and nobody was told it was stored.
4. The publisher later signs a checkpoint over the tiles' root and inserts it: *published*.

Privileges: the schema's owner runs the migrations (``indelible init``); the service may
connect as a role that has INSERT and SELECT only on entries, checkpoints, anchors and
references (``pg_service_role``: init grants exactly that). Triggers refuse UPDATE, DELETE
and TRUNCATE of them even for the owner, and row-level security is forced on every per-log
table: each session names its log in the setting ``indelible.log_id``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

from indelible.core.entry import PersonalValue
from indelible.errors import ConfigError, DuplicateEventId, NotFound, StoreError, StoreLocked
from indelible.storage import display_url
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

__all__ = ["INDELIBLE_LOCK_SPACE", "SCHEMA", "PostgresStore"]

log = logging.getLogger("indelible.storage")

SCHEMA = "indelible"
INDELIBLE_LOCK_SPACE = 0x1DE1  # first key of the two-key advisory locks: (space, log_id)
_MIGRATION_LOCK = 0  # second key of the lock that serializes migrations
_CHUNK = 2000
_MOVED = "IDL01"  # SQLSTATE of expect_size: the log is not at the expected size
_CONNECT_TIMEOUT = 10

_ENTRY_TYPES = (
    "bigint[]",
    "bytea[]",
    "bytea[]",
    "text[]",
    "text[]",
    "bigint[]",
    "bigint[]",
    "text[]",
    "text[]",
    "text[]",
    "text[]",
    "text[]",
    "text[]",
    "text[]",
    "text[]",
)
# One append is one statement: the guard (expect_size aborts the statement when the log is
# not at the size the sequencer expects), then data-modifying CTEs that insert the entries,
# personal values and references and upsert the tiles, each from binary arrays (%b) through
# unnest. One round trip and one fsync, atomic without BEGIN/COMMIT. Measured here against
# the alternatives: text arrays give 0.45x the rows/s, a 1,000-row VALUES list 0.3x, a
# pipeline of statements costs about 1 ms more CPU per call. COPY is not an option:
# PostgreSQL refuses COPY FROM into a table with row-level security.
_APPEND = (
    "WITH guard AS (SELECT expect_size(%(log)b, %(size)b) AS ok), "
    f"new_entries AS (INSERT INTO entries (log_id, {ENTRY_COLUMNS}) "
    "SELECT %(log)b, u.* FROM guard, unnest("
    + ", ".join(f"%(e{i})b::{kind}" for i, kind in enumerate(_ENTRY_TYPES))
    + ") AS u RETURNING 1), "
    "new_personal AS (INSERT INTO personal_values (log_id, seq, pointer, salt, value) "
    "SELECT %(log)b, u.* FROM guard, "
    "unnest(%(p0)b::bigint[], %(p1)b::text[], %(p2)b::bytea[], %(p3)b::bytea[]) AS u "
    "RETURNING 1), "
    "new_refs AS (INSERT INTO entry_refs (log_id, ref_type, ref_id, seq) "
    "SELECT %(log)b, u.* FROM guard, unnest(%(r0)b::text[], %(r1)b::text[], %(r2)b::bigint[]) "
    "AS u RETURNING 1), "
    "new_tiles AS (INSERT INTO tiles (log_id, level, idx, hashes) "
    "SELECT %(log)b, u.* FROM guard, "
    "unnest(%(t0)b::integer[], %(t1)b::bigint[], %(t2)b::bytea[]) AS u "
    "ON CONFLICT (log_id, level, idx) DO UPDATE SET hashes = excluded.hashes RETURNING 1) "
    "SELECT ok FROM guard"
)
_SIZE = "SELECT COALESCE(MAX(seq) + 1, 0) FROM entries WHERE log_id = %s"
_LOG_COLUMNS = "log_id, name, origin, vkey, created_at_ms"

# What the service role may do: INSERT and SELECT only on what is append-only; tiles are
# rewritten as the right edge grows; personal values may be erased; a key only revoked.
_SERVICE_GRANTS = (
    "GRANT USAGE ON SCHEMA indelible TO {role}",
    "GRANT SELECT ON meta TO {role}",
    "GRANT SELECT, INSERT ON logs, entries, entry_refs, checkpoints, anchors TO {role}",
    "GRANT SELECT, INSERT, DELETE ON personal_values TO {role}",
    "GRANT SELECT, INSERT, UPDATE ON tiles, log_settings TO {role}",
    "GRANT SELECT, INSERT ON api_keys TO {role}",
    "GRANT UPDATE (revoked_at_ms) ON api_keys TO {role}",
    "GRANT EXECUTE ON FUNCTION current_log(), expect_size(bigint, bigint) TO {role}",
    # the alert engine: its cursor and state are rewritten; deliveries only change status
    "GRANT SELECT, INSERT, UPDATE, DELETE ON alert_state TO {role}",
    "GRANT SELECT, INSERT, UPDATE ON alert_deliveries TO {role}",
)

T = TypeVar("T")


def _migrations() -> list[tuple[int, str]]:
    return migrations("pg_migrations")


def schema_version() -> int:
    """The schema version this build of the PostgreSQL store expects."""
    return _migrations()[-1][0]


class _Conn:
    """One psycopg connection and the log its session is scoped to (row-level security)."""

    def __init__(self, conn: psycopg.Connection[tuple[Any, ...]]) -> None:
        self.conn = conn
        self.log_id: int | None = None

    def scope(self, log_id: int) -> None:
        if self.log_id != log_id:
            self.conn.execute("SELECT set_config('indelible.log_id', %s, false)", (str(log_id),))
            self.log_id = log_id


class PostgresStore:
    """A store in one PostgreSQL database (schema ``indelible``). Thread-safe: one general
    write connection, a lease connection per log being written, a reader per thread."""

    def __init__(
        self,
        url: str,
        *,
        create: bool = True,
        migrate: bool = True,
        service_role: str | None = None,
    ) -> None:
        self.url = url
        self._shown = display_url(url)
        self._write_lock = threading.Lock()
        self._local = threading.local()
        self._readers: list[_Conn] = []
        self._readers_lock = threading.Lock()
        self._leases: dict[int, _Conn] = {}
        self._wanted: set[int] = set()  # leases taken and not released: retaken if lost
        self._lease_lock = threading.Lock()
        self._writer = _Conn(self._connect())
        self._check_durability()
        version = self._version(self._writer.conn)
        if version is None and not create:
            self.close()
            raise NotFound(f"no Indelible store at {self._shown} (run `indelible init` first)")
        if migrate:
            self._migrate(version, service_role)
        else:
            self._require_current(version)

    # ---- connections
    def _connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        try:
            conn = psycopg.connect(
                self.url,
                autocommit=True,
                connect_timeout=_CONNECT_TIMEOUT,
                options=f"-c search_path={SCHEMA} -c synchronous_commit=on",
                application_name="indelible",
            )
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to PostgreSQL at {self._shown}: {exc}") from exc
        return conn

    def _check_durability(self) -> None:
        row = self._writer.conn.execute("SELECT current_setting('fsync')").fetchone()
        if row is None or row[0] != "on":
            self._writer.conn.close()
            raise StoreError(
                f"PostgreSQL at {self._shown} runs with fsync = off: its commits are not "
                "durable, and Indelible acknowledges events only after a durable commit"
            )

    def _reader(self) -> _Conn:
        found: _Conn | None = getattr(self._local, "conn", None)
        if found is None or found.conn.closed or found.conn.broken:
            found = _Conn(self._connect())
            self._local.conn = found
            with self._readers_lock:
                self._readers.append(found)
        return found

    @contextlib.contextmanager
    def _errors(self, what: str, conn: _Conn | None = None) -> Iterator[None]:
        """psycopg errors become StoreError; a broken connection is dropped, to reconnect."""
        try:
            yield
        except psycopg.Error as exc:
            if conn is not None and conn.conn.broken:
                conn.log_id = None
            raise StoreError(f"{what} in {self._shown} failed: {_message(exc)}") from exc

    def _read(self, log_id: int | None, what: str, work: Callable[[_Conn], T]) -> T:
        conn = self._reader()
        with self._errors(what, conn):
            if log_id is not None:
                conn.scope(log_id)
            return work(conn)

    def _write(self, log_id: int | None, what: str, work: Callable[[_Conn], T]) -> T:
        with self._write_lock:
            if self._writer.conn.closed or self._writer.conn.broken:
                self._writer = _Conn(self._connect())
            with self._errors(what, self._writer):
                if log_id is not None:
                    self._writer.scope(log_id)
                return work(self._writer)

    # ---- schema
    def _version(self, conn: psycopg.Connection[tuple[Any, ...]]) -> int | None:
        with self._errors("reading the schema version"):
            exists = conn.execute("SELECT to_regclass('indelible.meta') IS NOT NULL").fetchone()
            if not (exists and exists[0]):
                return None
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return int(row[0]) if row else 0

    def _require_current(self, version: int | None) -> None:
        wanted = schema_version()
        if version != wanted:
            self.close()
            raise StoreError(
                f"the Indelible schema in {self._shown} is at version {version or 0}, this "
                f"Indelible needs {wanted}: run `indelible init` as the schema's owner"
            )

    def _migrate(self, version: int | None, service_role: str | None) -> None:
        wanted = schema_version()
        if version == wanted and not service_role:
            return
        conn = self._writer.conn
        try:
            with conn.transaction():
                conn.execute(
                    "SELECT pg_advisory_xact_lock(%s, %s)", (INDELIBLE_LOCK_SPACE, _MIGRATION_LOCK)
                )
                conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
                current = self._version(conn) or 0
                for number, script in _migrations():
                    if number > current:
                        conn.execute(script.encode())  # no parameters: one simple query
                        conn.execute(
                            "INSERT INTO meta (key, value) VALUES ('schema_version', %s) "
                            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                            (str(number),),
                        )
                if service_role:
                    role = sql.Identifier(service_role)
                    exists = conn.execute(
                        "SELECT 1 FROM pg_roles WHERE rolname = %s", (service_role,)
                    ).fetchone()
                    if exists is None:
                        raise ConfigError(
                            f"PostgreSQL role {service_role!r} does not exist: create it "
                            f"(CREATE ROLE {service_role} LOGIN PASSWORD '…') and run init again",
                            setting="pg_service_role",
                        )
                    for grant in _SERVICE_GRANTS:
                        conn.execute(sql.SQL(grant).format(role=role))
        except pg_errors.InsufficientPrivilege as exc:
            self.close()
            raise StoreError(
                f"cannot create or migrate the Indelible schema in {self._shown} "
                f"(at version {version or 0}, needs {wanted}) with this role: run "
                f"`indelible init` as the schema's owner ({_message(exc)})"
            ) from exc
        except psycopg.Error as exc:
            self.close()
            raise StoreError(f"migrating {self._shown} failed: {_message(exc)}") from exc
        except BaseException:
            self.close()
            raise

    # ---- logs
    def create_log(self, name: str, origin: str, vkey: str, created_at_ms: int) -> LogInfo:
        def work(c: _Conn) -> LogInfo:
            try:
                row = c.conn.execute(
                    "INSERT INTO logs (name, origin, vkey, created_at_ms) VALUES (%s, %s, %s, %s) "
                    "RETURNING log_id",
                    (name, origin, vkey, created_at_ms),
                ).fetchone()
            except pg_errors.UniqueViolation as exc:
                raise StoreError(f"log {name!r} or origin {origin!r} already exists") from exc
            assert row is not None
            return LogInfo(int(row[0]), name, origin, vkey, created_at_ms)

        return self._write(None, "creating a log", work)

    def get_log(self, name: str) -> LogInfo:
        row = self._read(
            None,
            "reading a log",
            lambda c: c.conn.execute(
                f"SELECT {_LOG_COLUMNS} FROM logs WHERE name = %s", (name,)
            ).fetchone(),
        )
        if row is None:
            raise NotFound(f"no log named {name!r}")
        return LogInfo(*row)

    def list_logs(self) -> list[LogInfo]:
        rows = self._read(
            None,
            "listing logs",
            lambda c: c.conn.execute(f"SELECT {_LOG_COLUMNS} FROM logs ORDER BY log_id").fetchall(),
        )
        return [LogInfo(*row) for row in rows]

    # ---- writer side
    def acquire_writer(self, log_id: int, *, wait: bool) -> None:
        with self._lease_lock:
            held = self._leases.get(log_id)
            if held is not None and not held.conn.closed and not held.conn.broken:
                return
            lease = _Conn(self._connect())
            try:
                if wait:
                    lease.conn.execute(
                        "SELECT pg_advisory_lock(%s, %s)", (INDELIBLE_LOCK_SPACE, log_id)
                    )
                else:
                    row = lease.conn.execute(
                        "SELECT pg_try_advisory_lock(%s, %s)", (INDELIBLE_LOCK_SPACE, log_id)
                    ).fetchone()
                    if not (row and row[0]):
                        raise StoreLocked(
                            f"log {log_id} in {self._shown} is being written by another process"
                        )
                lease.scope(log_id)
            except BaseException as exc:
                lease.conn.close()
                if isinstance(exc, psycopg.Error):
                    raise StoreError(f"cannot take the write lease: {_message(exc)}") from exc
                raise
            self._leases[log_id] = lease
            self._wanted.add(log_id)

    def release_writer(self, log_id: int) -> None:
        with self._lease_lock:
            lease = self._leases.pop(log_id, None)
            self._wanted.discard(log_id)
        if lease is not None:
            lease.conn.close()  # ending the session releases the advisory lock

    def append(
        self,
        log_id: int,
        expected_size: int,
        entries: Sequence[EntryRow],
        tiles: Mapping[tuple[int, int], bytes],
    ) -> None:
        lease = self._leases.get(log_id)
        if lease is None or lease.conn.closed or lease.conn.broken:
            if log_id not in self._wanted:
                raise StoreError(f"append to log {log_id} without holding its write lease")
            # The session, and with it the lock, was lost (a restart, a failover, a network
            # cut). Take it again if no one else has: the size guard below then refuses the
            # batch if another process wrote meanwhile (the sequencer rereads and goes on).
            self.acquire_writer(log_id, wait=False)
            lease = self._leases[log_id]
        params: dict[str, Any] = {"log": log_id, "size": expected_size}
        columns: list[list[Any]] = [[] for _ in _ENTRY_TYPES]
        personal: list[list[Any]] = [[], [], [], []]
        refs: list[list[Any]] = [[], [], []]
        for e in entries:
            for i, value in enumerate((e.seq, e.leaf, e.leaf_hash, *e.index)):
                columns[i].append(value)
            for p in e.personal:
                for i, item in enumerate((e.seq, p.pointer, p.salt, p.value)):
                    personal[i].append(item)
            for kind, ref in e.refs:
                for i, item in enumerate((kind, ref, e.seq)):
                    refs[i].append(item)
        params.update({f"e{i}": column for i, column in enumerate(columns)})
        params.update({f"p{i}": column for i, column in enumerate(personal)})
        params.update({f"r{i}": column for i, column in enumerate(refs)})
        keys = list(tiles)
        params.update(t0=[k[0] for k in keys], t1=[k[1] for k in keys], t2=[tiles[k] for k in keys])
        try:
            lease.conn.execute(_APPEND, params)
        except pg_errors.UniqueViolation as exc:
            if exc.diag.constraint_name == "entries_event_id":
                raise DuplicateEventId("an event_id in the batch is already stored") from exc
            raise StoreError(f"append to {self._shown} failed: {_message(exc)}") from exc
        except psycopg.Error as exc:
            if exc.sqlstate == _MOVED:
                raise StoreError(exc.diag.message_primary or _message(exc)) from exc
            raise StoreError(f"append to {self._shown} failed: {_message(exc)}") from exc

    def add_checkpoint(self, log_id: int, row: CheckpointRow) -> None:
        self._write(
            log_id,
            f"storing the checkpoint of size {row.size}",
            lambda c: c.conn.execute(
                "INSERT INTO checkpoints (log_id, size, root, note, created_at_ms) "
                "VALUES (%s, %s, %s, %s, %s)",
                (log_id, row.size, row.root, row.note, row.created_at_ms),
            ),
        )

    # ---- reads
    def tree_size(self, log_id: int) -> int:
        row = self._read(
            log_id, "reading the tree size", lambda c: c.conn.execute(_SIZE, (log_id,)).fetchone()
        )
        return int(row[0]) if row else 0

    def get_tile(self, log_id: int, level: int, index: int) -> bytes:
        found = self.get_tiles(log_id, [(level, index)])
        if not found:
            raise NotFound(f"no tile at level {level}, index {index}")
        return found[(level, index)]

    def get_tiles(
        self, log_id: int, keys: Sequence[tuple[int, int]]
    ) -> dict[tuple[int, int], bytes]:
        if not keys:
            return {}
        rows = self._read(
            log_id,
            "reading tiles",
            lambda c: c.conn.execute(
                "SELECT t.level, t.idx, t.hashes FROM tiles t "
                "JOIN unnest(%s::integer[], %s::bigint[]) AS k(level, idx) "
                "ON t.level = k.level AND t.idx = k.idx WHERE t.log_id = %s",
                ([k[0] for k in keys], [k[1] for k in keys], log_id),
            ).fetchall(),
        )
        return {(level, index): bytes(hashes) for level, index, hashes in rows}

    def tile_keys(self, log_id: int) -> list[tuple[int, int]]:
        rows = self._read(
            log_id,
            "listing tiles",
            lambda c: c.conn.execute(
                "SELECT level, idx FROM tiles WHERE log_id = %s ORDER BY level, idx", (log_id,)
            ).fetchall(),
        )
        return [(int(level), int(index)) for level, index in rows]

    def _personal(
        self, c: _Conn, log_id: int, seqs: Sequence[int] | None, start: int = 0, end: int = 0
    ) -> dict[int, tuple[PersonalValue, ...]]:
        if seqs is None:
            rows = c.conn.execute(
                "SELECT seq, pointer, salt, value FROM personal_values "
                "WHERE log_id = %s AND seq >= %s AND seq < %s ORDER BY seq, pointer",
                (log_id, start, end),
            )
        else:
            rows = c.conn.execute(
                "SELECT seq, pointer, salt, value FROM personal_values "
                "WHERE log_id = %s AND seq = ANY(%s) ORDER BY seq, pointer",
                (log_id, list(seqs)),
            )
        return group_personal(rows)

    def get_entry(self, log_id: int, seq: int) -> EntryRow:
        def work(c: _Conn) -> EntryRow | None:
            row = c.conn.execute(
                f"SELECT {ENTRY_COLUMNS} FROM entries WHERE log_id = %s AND seq = %s",
                (log_id, seq),
            ).fetchone()
            if row is None:
                return None
            return entry_row(row, self._personal(c, log_id, None, seq, seq + 1).get(seq, ()))

        found = self._read(log_id, "reading an entry", work)
        if found is None:
            raise NotFound(f"no entry at seq {seq}")
        return found

    def find_event_ids(self, log_id: int, event_ids: Sequence[str]) -> dict[str, EntryRow]:
        ids = list(dict.fromkeys(event_ids))
        if not ids:
            return {}

        def work(c: _Conn) -> dict[str, EntryRow]:
            rows = c.conn.execute(
                f"SELECT {ENTRY_COLUMNS} FROM entries WHERE log_id = %s AND event_id = ANY(%s)",
                (log_id, ids),
            ).fetchall()
            personal = self._personal(c, log_id, [row[0] for row in rows]) if rows else {}
            return {row[3]: entry_row(row, personal.get(row[0], ())) for row in rows}

        return self._read(log_id, "looking up event ids", work)

    def iter_entries(
        self, log_id: int, start: int = 0, end: int | None = None
    ) -> Iterator[EntryRow]:
        stop = end if end is not None else self.tree_size(log_id)
        at = start
        while at < stop:
            upto = min(at + _CHUNK, stop)

            def work(c: _Conn, at: int = at, upto: int = upto) -> list[EntryRow]:
                rows = c.conn.execute(
                    f"SELECT {ENTRY_COLUMNS} FROM entries "
                    "WHERE log_id = %s AND seq >= %s AND seq < %s ORDER BY seq",
                    (log_id, at, upto),
                ).fetchall()
                personal = self._personal(c, log_id, None, at, upto)
                refs = _refs(c, log_id, at, upto)
                chunk = []
                for row in rows:
                    entry = entry_row(row, personal.get(row[0], ()))
                    chunk.append(replace(entry, refs=refs[row[0]]) if row[0] in refs else entry)
                return chunk

            yield from self._read(log_id, "reading entries", work)
            at = upto

    def read_leaves(self, log_id: int, start: int, end: int) -> list[LeafRow]:
        def work(c: _Conn) -> list[LeafRow]:
            rows = c.conn.execute(
                "SELECT seq, received_at_ms, leaf FROM entries "
                "WHERE log_id = %s AND seq >= %s AND seq < %s ORDER BY seq",
                (log_id, start, end),
            ).fetchall()
            if not rows:
                return []
            personal = self._personal(c, log_id, None, start, end)
            return [(seq, at, bytes(leaf), personal.get(seq, ())) for seq, at, leaf in rows]

        return self._read(log_id, "reading entries", work)

    def latest_checkpoint(self, log_id: int) -> CheckpointRow | None:
        row = self._read(
            log_id,
            "reading the latest checkpoint",
            lambda c: c.conn.execute(
                "SELECT size, root, note, created_at_ms FROM checkpoints WHERE log_id = %s "
                "ORDER BY size DESC LIMIT 1",
                (log_id,),
            ).fetchone(),
        )
        return None if row is None else CheckpointRow(row[0], bytes(row[1]), row[2], row[3])

    def get_checkpoint(self, log_id: int, size: int) -> CheckpointRow:
        row = self._read(
            log_id,
            "reading a checkpoint",
            lambda c: c.conn.execute(
                "SELECT size, root, note, created_at_ms FROM checkpoints "
                "WHERE log_id = %s AND size = %s",
                (log_id, size),
            ).fetchone(),
        )
        if row is None:
            raise NotFound(f"no checkpoint of size {size}")
        return CheckpointRow(row[0], bytes(row[1]), row[2], row[3])

    def list_checkpoints(self, log_id: int) -> list[CheckpointRow]:
        rows = self._read(
            log_id,
            "listing checkpoints",
            lambda c: c.conn.execute(
                "SELECT size, root, note, created_at_ms FROM checkpoints WHERE log_id = %s "
                "ORDER BY size",
                (log_id,),
            ).fetchall(),
        )
        return [CheckpointRow(r[0], bytes(r[1]), r[2], r[3]) for r in rows]

    # ---- anchors
    def add_anchor(self, log_id: int, row: AnchorRow) -> None:
        self._write(
            log_id,
            f"storing the {row.kind} anchor of size {row.size}",
            lambda c: c.conn.execute(
                "INSERT INTO anchors (log_id, size, kind, authority, evidence, created_at_ms) "
                "VALUES (%s, %s, %s, %s, %s, %s)",
                (log_id, row.size, row.kind, row.authority, row.evidence, row.created_at_ms),
            ),
        )

    def list_anchors(
        self, log_id: int, *, size: int | None = None, kind: str | None = None
    ) -> list[AnchorRow]:
        rows = self._read(
            log_id,
            "listing anchors",
            lambda c: c.conn.execute(
                f"SELECT {ANCHOR_COLUMNS} FROM anchors WHERE log_id = %s "
                "AND (%s::bigint IS NULL OR size = %s) AND (%s::text IS NULL OR kind = %s) "
                "ORDER BY size, kind, authority",
                (log_id, size, size, kind, kind),
            ).fetchall(),
        )
        return [anchor_row(row) for row in rows]

    def latest_anchor(self, log_id: int, kind: str, authority: str) -> AnchorRow | None:
        row = self._read(
            log_id,
            "reading an anchor",
            lambda c: c.conn.execute(
                f"SELECT {ANCHOR_COLUMNS} FROM anchors "
                "WHERE log_id = %s AND kind = %s AND authority = %s ORDER BY size DESC LIMIT 1",
                (log_id, kind, authority),
            ).fetchone(),
        )
        return None if row is None else anchor_row(row)

    # ---- queries
    def query_entries(self, log_id: int, query: EntryQuery) -> list[EntryRow]:
        where, params = where_clause(log_id, query, "%s")
        order = "DESC" if query.descending else "ASC"

        def work(c: _Conn) -> list[EntryRow]:
            rows = c.conn.execute(
                f"SELECT {ENTRY_COLUMNS} FROM entries WHERE {where} ORDER BY seq {order} LIMIT %s",
                (*params, max(0, query.limit)),
            ).fetchall()
            personal = self._personal(c, log_id, [row[0] for row in rows]) if rows else {}
            return [entry_row(row, personal.get(row[0], ())) for row in rows]

        return self._read(log_id, "querying entries", work)

    def count_entries(self, log_id: int, query: EntryQuery) -> int:
        where, params = where_clause(log_id, query, "%s")
        row = self._read(
            log_id,
            "counting entries",
            lambda c: c.conn.execute(
                f"SELECT COUNT(*) FROM entries WHERE {where}", params
            ).fetchone(),
        )
        return int(row[0]) if row else 0

    def get_refs(self, log_id: int, start: int, end: int) -> dict[int, tuple[tuple[str, str], ...]]:
        return self._read(log_id, "reading references", lambda c: _refs(c, log_id, start, end))

    # ---- access
    def add_api_key(self, row: ApiKeyRow) -> None:
        self._write(
            None,
            f"storing API key {row.key_id}",
            lambda c: c.conn.execute(
                f"INSERT INTO api_keys ({KEY_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                key_values(row),
            ),
        )

    def get_api_key(self, key_id: str) -> ApiKeyRow:
        row = self._read(
            None,
            "reading an API key",
            lambda c: c.conn.execute(
                f"SELECT {KEY_COLUMNS} FROM api_keys WHERE key_id = %s", (key_id,)
            ).fetchone(),
        )
        if row is None:
            raise NotFound(f"no API key {key_id!r}")
        return key_row(row)

    def list_api_keys(self, log_id: int | None = None) -> list[ApiKeyRow]:
        rows = self._read(
            None,
            "listing API keys",
            lambda c: c.conn.execute(
                f"SELECT {KEY_COLUMNS} FROM api_keys WHERE (%s::bigint IS NULL OR log_id = %s) "
                "ORDER BY created_at_ms, key_id",
                (log_id, log_id),
            ).fetchall(),
        )
        return [key_row(row) for row in rows]

    def revoke_api_key(self, key_id: str, at_ms: int) -> bool:
        cur = self._write(
            None,
            f"revoking API key {key_id}",
            lambda c: c.conn.execute(
                "UPDATE api_keys SET revoked_at_ms = %s "
                "WHERE key_id = %s AND revoked_at_ms IS NULL",
                (at_ms, key_id),
            ),
        )
        return cur.rowcount == 1

    def get_log_settings(self, log_id: int) -> dict[str, str]:
        rows = self._read(
            log_id,
            "reading settings",
            lambda c: c.conn.execute(
                "SELECT name, value FROM log_settings WHERE log_id = %s ORDER BY name", (log_id,)
            ).fetchall(),
        )
        return {name: value for name, value in rows}

    def set_log_setting(self, log_id: int, name: str, value: str) -> None:
        self._write(
            log_id,
            f"storing setting {name}",
            lambda c: c.conn.execute(
                "INSERT INTO log_settings (log_id, name, value) VALUES (%s, %s, %s) "
                "ON CONFLICT (log_id, name) DO UPDATE SET value = excluded.value",
                (log_id, name, value),
            ),
        )

    # ---- alerts
    def load_alert_state(self, log_id: int) -> dict[str, str]:
        rows = self._read(
            log_id,
            "reading the alert state",
            lambda c: c.conn.execute(
                "SELECT key, value FROM alert_state WHERE log_id = %s", (log_id,)
            ).fetchall(),
        )
        return {key: value for key, value in rows}

    def save_alert_state(
        self,
        log_id: int,
        changes: Mapping[str, str | None],
        deliveries: Sequence[DeliveryRow] = (),
    ) -> None:
        upserts, deletes, rows = alert_state_params(log_id, changes, deliveries)

        def work(c: _Conn) -> None:
            with c.conn.transaction(), c.conn.cursor() as cur:
                if upserts:
                    cur.executemany(
                        "INSERT INTO alert_state (log_id, key, value) VALUES (%s, %s, %s) "
                        "ON CONFLICT (log_id, key) DO UPDATE SET value = excluded.value",
                        upserts,
                    )
                if deletes:
                    cur.executemany(
                        "DELETE FROM alert_state WHERE log_id = %s AND key = %s", deletes
                    )
                if rows:
                    cur.executemany(
                        f"INSERT INTO alert_deliveries (log_id, {DELIVERY_COLUMNS}) "
                        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                        "ON CONFLICT (log_id, alert_id, sink) DO NOTHING",
                        rows,
                    )

        self._write(log_id, "storing the alert state", work)

    def due_deliveries(self, log_id: int, now_ms: int, limit: int) -> list[DeliveryRow]:
        rows = self._read(
            log_id,
            "reading due deliveries",
            lambda c: c.conn.execute(
                f"SELECT {DELIVERY_COLUMNS} FROM alert_deliveries WHERE log_id = %s "
                "AND status = 'pending' AND next_attempt_ms <= %s "
                "ORDER BY next_attempt_ms, seq, sink LIMIT %s",
                (log_id, now_ms, limit),
            ).fetchall(),
        )
        return [delivery_row(row) for row in rows]

    def update_delivery(self, log_id: int, row: DeliveryRow) -> None:
        self._write(
            log_id,
            f"updating the delivery of {row.alert_id}",
            lambda c: c.conn.execute(
                "UPDATE alert_deliveries SET status = %s, attempts = %s, next_attempt_ms = %s, "
                "last_error = %s, updated_at_ms = %s "
                "WHERE log_id = %s AND alert_id = %s AND sink = %s",
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
            ),
        )

    def list_deliveries(
        self, log_id: int, *, status: str | None = None, limit: int = 100
    ) -> list[DeliveryRow]:
        rows = self._read(
            log_id,
            "listing deliveries",
            lambda c: c.conn.execute(
                f"SELECT {DELIVERY_COLUMNS} FROM alert_deliveries WHERE log_id = %s "
                "AND (%s::text IS NULL OR status = %s) ORDER BY seq DESC, sink LIMIT %s",
                (log_id, status, status, limit),
            ).fetchall(),
        )
        return [delivery_row(row) for row in rows]

    def count_deliveries(self, log_id: int) -> dict[str, int]:
        rows = self._read(
            log_id,
            "counting deliveries",
            lambda c: c.conn.execute(
                "SELECT status, COUNT(*) FROM alert_deliveries WHERE log_id = %s GROUP BY status",
                (log_id,),
            ).fetchall(),
        )
        return {status: int(count) for status, count in rows}

    def close(self) -> None:
        with self._lease_lock:
            leases = list(self._leases.values())
            self._leases.clear()
            self._wanted.clear()
        for lease in leases:
            lease.conn.close()
        with self._readers_lock:
            for reader in self._readers:
                reader.conn.close()
            self._readers.clear()
        with self._write_lock:
            self._writer.conn.close()


def _refs(c: _Conn, log_id: int, start: int, end: int) -> dict[int, tuple[tuple[str, str], ...]]:
    rows = c.conn.execute(
        "SELECT seq, ref_type, ref_id FROM entry_refs WHERE log_id = %s AND seq >= %s AND seq < %s",
        (log_id, start, end),
    )
    return group_refs(rows)


def _message(exc: psycopg.Error) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
