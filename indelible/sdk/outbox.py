"""The durable local outbox: a SQLite file every event is committed to before ``record()``
returns.

Life of an event in the outbox:

1. ``append`` reserves room for the events (the outbox is bounded by ``max_events`` and
   ``max_bytes``); when there is none, the policy decides: ``block`` waits for the sender to
   make room (at most ``block_timeout`` seconds, then :class:`OutboxFull`), ``raise`` raises
   :class:`OutboxFull` at once, ``spill`` writes the events to an append-only spill file
   beside the outbox instead.
2. The caller's events join a queue. The first caller to find no commit running becomes the
   *leader*: it takes every queued batch (its own and those that arrived meanwhile), writes
   them in ONE transaction — ``journal_mode=WAL``, ``synchronous=FULL``, so the commit returns
   only after the WAL is fsync'd — and, for spilled batches, appends and fsyncs the spill
   file. Then it wakes every caller whose events were in it. Many threads recording at once
   share one fsync; none returns before the commit holding its events is durable.
3. The sender reads rows oldest first, sends them, and deletes them only once the service has
   acknowledged them (:meth:`acknowledge`), or moves them to the ``rejected`` table when the
   service refused them for good (:meth:`reject`). Deleting makes room; spilled events are
   then moved back into the outbox (:meth:`drain_spill`), the spill file rewritten without
   them (written aside, fsync'd, renamed).

A crash at any step leaves every event that ``append`` returned for either in the outbox, in
the spill file, or acknowledged by the service; an event may be sent twice, which its
``event_id`` makes harmless. One process at a time opens an outbox (an exclusive lock on
``<path>.lock``).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson

from indelible.errors import IndelibleError

try:  # POSIX; elsewhere a second process on the same outbox is not detected
    import fcntl
except ImportError:  # pragma: no cover - not on the platforms tested
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "FullPolicy",
    "Outbox",
    "OutboxClosed",
    "OutboxError",
    "OutboxFull",
    "OutboxLocked",
    "Rejected",
    "Row",
]

FullPolicy = Literal["block", "raise", "spill"]
_POLICIES = ("block", "raise", "spill")
_MIN_BYTES = 1 << 20

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL,
    body BLOB NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS rejected (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL,
    body BLOB NOT NULL,
    status INTEGER,
    code TEXT NOT NULL,
    reason TEXT NOT NULL,
    rejected_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class OutboxError(IndelibleError):
    """The outbox could not commit: the events were NOT recorded."""

    code = "outbox_error"
    status = 500


class OutboxFull(OutboxError):
    """The outbox is at its bound (``max_events`` or ``max_bytes``) and the policy refused to
    wait longer (``block``) or at all (``raise``). Nothing of the call was recorded."""

    code = "outbox_full"

    def __init__(self, message: str, *, pending: int, pending_bytes: int) -> None:
        super().__init__(message)
        self.pending, self.pending_bytes = pending, pending_bytes

    def details(self) -> dict[str, Any]:
        return {"pending": self.pending, "pending_bytes": self.pending_bytes}


class OutboxLocked(OutboxError):
    """Another process has this outbox open."""

    code = "outbox_locked"


class OutboxClosed(OutboxError):
    """The outbox was closed."""

    code = "outbox_closed"


@dataclass(frozen=True, slots=True)
class Row:
    """One pending event: its outbox row id, ``event_id`` and canonical JSON bytes."""

    id: int
    event_id: str
    body: bytes


@dataclass(frozen=True, slots=True)
class Rejected:
    """An event the service refused for good, kept aside with why."""

    event_id: str
    event: dict[str, Any]
    status: int | None
    code: str
    reason: str
    rejected_ms: int


@dataclass(eq=False)
class _Ticket:
    items: list[tuple[str, bytes]]
    size: int
    spill: bool
    done: bool = False
    error: BaseException | None = None


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=60.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=60000")
    return conn


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Outbox:
    """A bounded, durable, group-committed queue of events in one SQLite file."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_events: int = 100_000,
        max_bytes: int = 256 << 20,
        when_full: FullPolicy = "block",
        block_timeout: float = 30.0,
        spill_path: str | os.PathLike[str] | None = None,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        if when_full not in _POLICIES:
            raise ValueError(f"when_full must be one of {', '.join(_POLICIES)}")
        if max_events < 1:
            raise ValueError("max_events must be at least 1")
        if max_bytes < _MIN_BYTES:
            raise ValueError(f"max_bytes must be at least {_MIN_BYTES} (one largest event)")
        self.path = Path(path)
        self.spill_path = Path(spill_path) if spill_path else Path(f"{self.path}.spill")
        self.max_events, self.max_bytes = max_events, max_bytes
        self.when_full: FullPolicy = when_full
        self.block_timeout = block_timeout
        self._on_commit = on_commit
        self._lock_file = self._take_lock()
        self._writer = _connect(self.path)
        self._writer.executescript(_SCHEMA)
        self._reader = _connect(self.path)
        self._db = threading.RLock()  # the reader connection: one transaction at a time
        self._cond = threading.Condition()
        self._queue: list[_Ticket] = []
        self._leading = False
        self._closed = False
        self.commits = 0  # durable transactions written by append (group commits)
        self._spill_lock = threading.Lock()
        row = self._reader.execute("SELECT count(*), coalesce(sum(length(body)), 0) FROM outbox")
        count, size = row.fetchone()
        self._count: int = int(count)
        self._bytes: int = int(size)
        self._spilled = len(self._read_spill())

    # -- opening and closing -------------------------------------------------------------

    def _take_lock(self) -> Any:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(f"{self.path}.lock", "a+b")  # noqa: SIM115 - held until close()
        if fcntl is not None:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                handle.close()
                raise OutboxLocked(f"another process has the outbox {self.path} open") from exc
        return handle

    def close(self) -> None:
        """Close the files. Events recorded so far stay in the outbox for the next open."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            while self._leading:
                self._cond.wait()
            self._cond.notify_all()
        self._writer.close()
        with self._db:
            self._reader.close()
        self._lock_file.close()

    @property
    def closed(self) -> bool:
        return self._closed

    # -- appending: reserve, then group commit -------------------------------------------

    def append(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Commit ``(event_id, canonical bytes)`` durably; return only once they are."""
        if not items:
            return
        ticket = self._reserve(list(items))
        self._commit_queued(ticket)
        if ticket.error is not None:
            raise ticket.error

    def _reserve(self, items: list[tuple[str, bytes]]) -> _Ticket:
        size = sum(len(body) for _, body in items)
        count = len(items)
        deadline = time.monotonic() + self.block_timeout
        with self._cond:
            while True:
                if self._closed:
                    raise OutboxClosed("the outbox is closed")
                if self._fits(count, size):
                    self._count += count
                    self._bytes += size
                    ticket = _Ticket(items, size, spill=False)
                    break
                if self.when_full == "spill":
                    self._spilled += count
                    ticket = _Ticket(items, size, spill=True)
                    break
                remaining = deadline - time.monotonic()
                if self.when_full == "raise" or remaining <= 0:
                    raise OutboxFull(
                        f"the outbox {self.path} is full ({self._count} events, "
                        f"{self._bytes} bytes; bounds {self.max_events} events, "
                        f"{self.max_bytes} bytes)",
                        pending=self._count,
                        pending_bytes=self._bytes,
                    )
                self._cond.wait(remaining)
            self._queue.append(ticket)
        return ticket

    def _fits(self, count: int, size: int) -> bool:
        if self._count == 0 and self._bytes == 0:
            return True  # an empty outbox takes any one call, however large
        return self._count + count <= self.max_events and self._bytes + size <= self.max_bytes

    def _commit_queued(self, ticket: _Ticket) -> None:
        while True:
            with self._cond:
                if ticket.done:
                    return
                if self._leading:
                    self._cond.wait()
                    continue
                self._leading = True
                batch, self._queue = self._queue, []
            try:
                self._write(batch)
            except BaseException as exc:  # an interrupt: no ticket may pass for committed
                self._fail([t for t in batch if t.error is None], exc)
                raise
            finally:
                with self._cond:
                    self._leading = False
                    for done in batch:
                        done.done = True
                    self._cond.notify_all()
            if self._on_commit is not None:
                self._on_commit()

    def _write(self, batch: list[_Ticket]) -> None:
        """One transaction (and at most one spill fsync) for every ticket of ``batch``."""
        stored = [t for t in batch if not t.spill]
        spilled = [t for t in batch if t.spill]
        if spilled:
            try:
                self._append_spill([body for t in spilled for _, body in t.items])
            except Exception as exc:
                self._fail(spilled, exc)
        if not stored:
            return
        now = _now_ms()
        rows = [(event_id, body, now) for t in stored for event_id, body in t.items]
        try:
            self._writer.execute("BEGIN IMMEDIATE")
            try:
                self._writer.executemany(
                    "INSERT INTO outbox (event_id, body, created_ms) VALUES (?, ?, ?)", rows
                )
                self._writer.execute("COMMIT")
                self.commits += 1
            except BaseException:
                if self._writer.in_transaction:
                    self._writer.execute("ROLLBACK")
                raise
        except Exception as exc:
            self._fail(stored, exc)

    def _fail(self, tickets: list[_Ticket], exc: BaseException) -> None:
        with self._cond:
            for t in tickets:
                t.error = OutboxError(f"the outbox {self.path} could not commit: {exc}")
                if t.spill:
                    self._spilled -= len(t.items)
                else:
                    self._count -= len(t.items)
                    self._bytes -= t.size
            self._cond.notify_all()

    # -- the spill file ------------------------------------------------------------------

    def _append_spill(self, bodies: list[bytes]) -> None:
        with self._spill_lock:
            fd = os.open(self.spill_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, b"".join(body + b"\n" for body in bodies))
                os.fsync(fd)
            finally:
                os.close(fd)

    def _read_spill(self) -> list[bytes]:
        try:
            data = self.spill_path.read_bytes()
        except FileNotFoundError:
            return []
        lines = data.split(b"\n")
        # A line without its newline was being written when the process died; it was never
        # acknowledged to anyone, so it is dropped.
        return [line for line in lines[:-1] if line]

    def drain_spill(self) -> int:
        """Move spilled events back into the outbox as room allows; the number moved."""
        with self._spill_lock:
            lines = self._read_spill()
            if not lines:
                return 0
            take, size = 0, 0
            with self._cond:
                room_events = self.max_events - self._count
                room_bytes = self.max_bytes - self._bytes
                while take < len(lines) and take < room_events:
                    if size + len(lines[take]) > room_bytes:
                        break
                    size += len(lines[take])
                    take += 1
                if take == 0:
                    return 0
                self._count += take
                self._bytes += size
            try:
                moved = [(_event_id_of(body), body) for body in lines[:take]]
                self._insert_on_reader(moved)
                self._rewrite_spill(lines[take:])
            except BaseException:
                with self._cond:
                    self._count -= take
                    self._bytes -= size
                raise
            with self._cond:
                self._spilled -= take
                self._cond.notify_all()
        return take

    def _insert_on_reader(self, rows: list[tuple[str, bytes]]) -> None:
        now = _now_ms()
        self._transaction(
            "INSERT INTO outbox (event_id, body, created_ms) VALUES (?, ?, ?)",
            [(event_id, body, now) for event_id, body in rows],
        )

    def _transaction(self, *steps: Any) -> None:
        """Run (sql, rows) pairs with executemany in one transaction of the reader."""
        with self._db:
            self._reader.execute("BEGIN IMMEDIATE")
            try:
                for sql, rows in zip(steps[::2], steps[1::2], strict=True):
                    if rows:
                        self._reader.executemany(sql, rows)
                self._reader.execute("COMMIT")
            except BaseException:
                if self._reader.in_transaction:
                    self._reader.execute("ROLLBACK")
                raise

    def _rewrite_spill(self, rest: list[bytes]) -> None:
        if not rest:
            self.spill_path.unlink(missing_ok=True)
        else:
            aside = self.spill_path.with_name(self.spill_path.name + ".tmp")
            fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, b"".join(body + b"\n" for body in rest))
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(aside, self.spill_path)
        dir_fd = os.open(self.spill_path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    # -- the sender's side ---------------------------------------------------------------

    def peek(self, limit: int, max_bytes: int) -> list[Row]:
        """The oldest pending rows: at most ``limit`` of them and about ``max_bytes``."""
        with self._db:
            found = self._reader.execute(
                "SELECT id, event_id, body FROM outbox ORDER BY id LIMIT ?", (limit,)
            ).fetchall()
        rows: list[Row] = []
        total = 0
        for row_id, event_id, body in found:
            if rows and total + len(body) > max_bytes:
                break
            rows.append(Row(row_id, event_id, bytes(body)))
            total += len(body)
        return rows

    def acknowledge(self, rows: Iterable[Row]) -> None:
        """Delete rows the service acknowledged, making room."""
        done = list(rows)
        if not done:
            return
        self._delete(done, None)

    def reject(self, refused: Sequence[tuple[Row, int | None, str, str]]) -> None:
        """Move rows the service refused for good to ``rejected``: (row, status, code, why)."""
        if not refused:
            return
        now = _now_ms()
        kept = [(r.event_id, r.body, status, code, why, now) for r, status, code, why in refused]
        self._delete([r for r, *_ in refused], kept)

    def refuse(self, refused: Sequence[tuple[str, bytes, str, str]]) -> None:
        """Keep events refused before they were recorded in ``rejected``, in one commit:
        (event_id, JSON body, code, why); ``status`` is None."""
        if not refused:
            return
        now = _now_ms()
        self._transaction(
            "INSERT INTO rejected (event_id, body, status, code, reason, rejected_ms)"
            " VALUES (?, ?, NULL, ?, ?, ?)",
            [(event_id, body, code, why, now) for event_id, body, code, why in refused],
        )

    def _delete(self, rows: list[Row], rejected: list[tuple[Any, ...]] | None) -> None:
        self._transaction(
            "INSERT INTO rejected (event_id, body, status, code, reason, rejected_ms)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            rejected,
            "DELETE FROM outbox WHERE id = ?",
            [(r.id,) for r in rows],
        )
        with self._cond:
            self._count -= len(rows)
            self._bytes -= sum(len(r.body) for r in rows)
            self._cond.notify_all()

    # -- what is in it -------------------------------------------------------------------

    def pending(self) -> int:
        """Events recorded and not yet acknowledged or rejected (outbox and spill file)."""
        with self._cond:
            return self._count + self._spilled

    def wait_empty(self, timeout: float | None) -> bool:
        """Wait until nothing is pending; False if ``timeout`` passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._count + self._spilled > 0 and not self._closed:
                remaining = 1.0 if deadline is None else deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 1.0))
            return self._count + self._spilled == 0

    def spilled(self) -> int:
        with self._cond:
            return self._spilled

    def pending_bytes(self) -> int:
        with self._cond:
            return self._bytes

    def rejected(self, limit: int = 1000) -> list[Rejected]:
        """The events the service refused for good, oldest first."""
        with self._db:
            found = self._reader.execute(
                "SELECT event_id, body, status, code, reason, rejected_ms FROM rejected"
                " ORDER BY id LIMIT ?",
                (limit,),
            ).fetchall()
        return [
            Rejected(event_id, orjson.loads(body), status, code, reason, at)
            for event_id, body, status, code, reason, at in found
        ]

    def get_meta(self, key: str) -> str | None:
        with self._db:
            row = self._reader.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        """Store ``value`` durably (a commit of its own)."""
        self._transaction(
            "INSERT INTO meta (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [(key, value)],
        )


def _event_id_of(body: bytes) -> str:
    event = orjson.loads(body)
    return str(event["event_id"])
