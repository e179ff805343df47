"""The witness's own state: one small SQLite file, apart from any log store.

It holds the logs the witness trusts (origin → one or more Ed25519 note vkeys) and, per origin,
the latest checkpoint it cosigned (size, root hash, the signed note as received). WAL mode with
``synchronous=FULL``: :meth:`WitnessState.advance` returns only once the new checkpoint is
fsync'd, so the witness never hands out a cosignature it could forget in a crash.

Life of an accepted checkpoint:

1. The service reads :meth:`~WitnessState.latest` and checks the request against it.
2. :meth:`~WitnessState.advance` opens ``BEGIN IMMEDIATE`` (SQLite's write lock), checks that
   the stored size and root are still the ones step 1 read (compare-and-swap), writes the new
   checkpoint and ``COMMIT``s. A concurrent request that advanced the log in between makes
   this one fail with :class:`StaleSize`; nothing is written (tlog-witness's rollback race).
3. Only then is the cosignature signed and returned.

Triggers refuse any UPDATE that lowers a stored size or changes the root at an unchanged
size, and any DELETE of a checkpoint, whatever code runs against the file.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from indelible import errors

__all__ = ["LatestCheckpoint", "Refusal", "StaleSize", "WitnessState"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS logs (
    origin TEXT NOT NULL,
    vkey   TEXT NOT NULL,  -- a C2SP signed-note verifier key the witness trusts
    PRIMARY KEY (origin, vkey)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS latest (
    origin        TEXT PRIMARY KEY,
    size          INTEGER NOT NULL CHECK (size >= 0),
    root          BLOB NOT NULL CHECK (length(root) = 32),
    note          TEXT NOT NULL,
    updated_at_s  INTEGER NOT NULL
);
CREATE TRIGGER IF NOT EXISTS latest_never_shrinks BEFORE UPDATE ON latest
WHEN NEW.size < OLD.size OR (NEW.size = OLD.size AND NEW.root != OLD.root)
   OR NEW.origin != OLD.origin
BEGIN
    SELECT RAISE(ABORT, 'witness: a stored checkpoint never shrinks or forks');
END;
CREATE TRIGGER IF NOT EXISTS latest_is_kept BEFORE DELETE ON latest
BEGIN
    SELECT RAISE(ABORT, 'witness: a stored checkpoint is never deleted');
END;
CREATE TABLE IF NOT EXISTS refusals (
    id            INTEGER PRIMARY KEY,
    origin        TEXT NOT NULL,
    received_at_s INTEGER NOT NULL,
    reason        TEXT NOT NULL,
    body          BLOB NOT NULL  -- the whole add-checkpoint request, as evidence
);
"""


class StaleSize(errors.InputError):
    """The stored checkpoint is no longer the one the request was checked against."""

    code = "stale_size"
    status = 409

    def __init__(self, message: str, *, size: int) -> None:
        super().__init__(message)
        self.size = size

    def details(self) -> dict[str, Any]:
        return {"size": self.size}


@dataclass(frozen=True)
class LatestCheckpoint:
    """The newest checkpoint the witness cosigned for one origin."""

    origin: str
    size: int
    root: bytes
    note: str
    updated_at_s: int


@dataclass(frozen=True)
class Refusal:
    """A refused request signed by a trusted key: possible evidence of log misbehaviour."""

    origin: str
    received_at_s: int
    reason: str
    body: bytes


class WitnessState:
    """The witness's SQLite file. Thread-safe: one connection behind a lock."""

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 30.0) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=busy_timeout
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise errors.StoreError(f"cannot open witness state {self.path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def _transaction(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    yield self._conn
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise errors.StoreError(f"witness state {self.path}: {exc}") from exc

    # ---- trusted logs
    def add_log(self, origin: str, vkey: str) -> bool:
        """Trust ``vkey`` for ``origin``; False if it was trusted already."""
        with self._transaction(write=True) as conn:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO logs (origin, vkey) VALUES (?, ?)", (origin, vkey)
            )
            return cursor.rowcount == 1

    def log_keys(self, origin: str) -> list[str]:
        """The vkeys trusted for ``origin`` (empty: the origin is unknown)."""
        with self._transaction() as conn:
            rows = conn.execute(
                "SELECT vkey FROM logs WHERE origin = ? ORDER BY vkey", (origin,)
            ).fetchall()
        return [row[0] for row in rows]

    def origins(self) -> list[str]:
        with self._transaction() as conn:
            rows = conn.execute("SELECT DISTINCT origin FROM logs ORDER BY origin").fetchall()
        return [row[0] for row in rows]

    # ---- cosigned checkpoints
    def latest(self, origin: str) -> LatestCheckpoint | None:
        """The newest checkpoint cosigned for ``origin``, or None if none was yet."""
        with self._transaction() as conn:
            row = conn.execute(
                "SELECT origin, size, root, note, updated_at_s FROM latest WHERE origin = ?",
                (origin,),
            ).fetchone()
        return None if row is None else LatestCheckpoint(*row)

    def advance(
        self,
        origin: str,
        old_size: int,
        new_size: int,
        root: bytes,
        note: str,
        *,
        old_root: bytes | None,
        now_s: int,
    ) -> None:
        """Compare-and-swap: store (``new_size``, ``root``, ``note``) for ``origin`` only if
        the stored checkpoint is still (``old_size``, ``old_root``); ``old_root`` None means
        "none stored yet" (``old_size`` is then 0).

        Raises :class:`StaleSize` carrying the stored size otherwise; nothing is written.
        Returns once the transaction is durable.
        """
        with self._transaction(write=True) as conn:
            row = conn.execute(
                "SELECT size, root FROM latest WHERE origin = ?", (origin,)
            ).fetchone()
            current = (0, None) if row is None else (row[0], bytes(row[1]))
            if current != (old_size, old_root):
                raise StaleSize(
                    f"the witness's checkpoint of {origin} is not the one checked",
                    size=current[0],
                )
            if row is None:
                conn.execute(
                    "INSERT INTO latest (origin, size, root, note, updated_at_s) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (origin, new_size, root, note, now_s),
                )
            else:
                conn.execute(
                    "UPDATE latest SET size = ?, root = ?, note = ?, updated_at_s = ? "
                    "WHERE origin = ?",
                    (new_size, root, note, now_s, origin),
                )

    # ---- evidence
    def record_refusal(self, origin: str, now_s: int, reason: str, body: bytes) -> None:
        with self._transaction(write=True) as conn:
            conn.execute(
                "INSERT INTO refusals (origin, received_at_s, reason, body) VALUES (?, ?, ?, ?)",
                (origin, now_s, reason, body),
            )

    def refusals(self, origin: str) -> list[Refusal]:
        with self._transaction() as conn:
            rows = conn.execute(
                "SELECT origin, received_at_s, reason, body FROM refusals WHERE origin = ? "
                "ORDER BY id",
                (origin,),
            ).fetchall()
        return [Refusal(r[0], r[1], r[2], bytes(r[3])) for r in rows]
