"""Benchmark subjects: the interfaces ``bench.measure`` drives, and the PyPI peers behind them.

Two kinds of subject:

* :class:`IngestSubject` -- durable ingest and full verification. Implemented here for
  ``tamperlog`` 0.1.0 (:class:`TamperlogSubject`) and ``auditchain`` 0.3.0's SQLite backend
  (:class:`AuditchainSqliteSubject`); Indelible plugs in as one more implementation.
* :class:`ProofSubject` -- inclusion proofs in a large tree. Implemented here for
  ``pymerkle`` 7.0.0 (:class:`PymerkleProofSubject`).

Equal durability is the rule: every ``append`` returns only once everything it wrote is
on stable storage (fsync'd). Each peer's docstring says what the peer does on its own and
what the adapter adds to get there.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import auditchain
import pymerkle  # type: ignore[import-untyped]
import tamperlog  # type: ignore[import-untyped]

__all__ = [
    "AuditchainSqliteSubject",
    "Event",
    "IngestSubject",
    "ProofSubject",
    "PymerkleProofSubject",
    "TamperlogSubject",
    "fsync_directory",
    "peer_ingest_subjects",
]

Event = Mapping[str, Any]


@runtime_checkable
class IngestSubject(Protocol):
    """Something that durably ingests audit events and can verify everything it holds.

    ``bench.measure`` calls, per run and in this order: ``open`` on a fresh empty directory,
    ``append`` any number of times, then (verify runs only) ``checkpoint`` and
    ``verify_all``, and finally ``close``. Only ``append`` and ``verify_all`` are timed.
    """

    name: str

    def open(self, directory: Path) -> None:
        """Create a new, empty log under ``directory`` (which exists and is empty)."""
        ...

    def append(self, events: Sequence[Event]) -> None:
        """Append ``events`` as one call; return only once they are durable (fsync'd)."""
        ...

    def checkpoint(self) -> None:
        """Record a trusted anchor for the current state, for ``verify_all`` (untimed)."""
        ...

    def verify_all(self) -> int:
        """Re-check everything stored from disk; return entries checked, raise if bad."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class ProofSubject(Protocol):
    """Something that builds a Merkle tree and proves inclusion of single leaves in it.

    ``bench.measure.proof_medians`` calls ``build`` once (untimed by the medians; the
    build time is reported on its own), then ``prove`` and ``verify`` per sampled index.
    """

    name: str

    def build(self, directory: Path, payloads: Iterable[bytes]) -> int:
        """Build a tree of one leaf per payload; return its size."""
        ...

    def prove(self, index: int) -> object:
        """An inclusion proof for leaf ``index`` (0-based) against the built tree's root."""
        ...

    def verify(self, index: int, proof: object) -> None:
        """Check ``proof`` for leaf ``index`` against the trusted root; raise if invalid."""
        ...

    def close(self) -> None: ...


def fsync_directory(directory: Path) -> None:
    """fsync a directory, making the names created in it durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- tamperlog


class TamperlogSubject:
    """``tamperlog`` 0.1.0: ``AppendOnlyLog`` over ``JSONLStorage`` (its only file backend).

    What tamperlog does on its own (``tamperlog/storage.py``, ``tamperlog/log.py``):

    * ``AppendOnlyLog.append_json`` encodes the value as sorted-key compact JSON, and
      ``JSONLStorage.append`` opens the file in append mode, writes one line
      ``{"payload": <base64>}``, calls ``flush()`` and closes it. It never fsyncs: after
      a power loss the tail of the file (any number of acknowledged entries) can be gone.
    * There is no batch API: a call of N events is N ``append_json`` calls (N opens,
      writes and closes of the file).
    * Leaf hashes (RFC 6962, SHA-256) are kept in memory; the Merkle root is recomputed on
      demand, and nothing (no root, no checkpoint) is persisted.

    What this adapter adds for equal durability: ``open`` creates the file itself and
    fsyncs it and its directory (untimed), and keeps one descriptor on it; every
    ``append`` call, after its last ``append_json``, calls ``os.fsync`` on that descriptor
    (fsync flushes the inode, so it covers the writes tamperlog made through its own
    handles). That is one fsync per call, the cheapest way to make the call durable.

    Full verification: ``checkpoint`` takes ``log.checkpoint()`` (size and root) from the
    writer; ``verify_all`` opens the file afresh (``AppendOnlyLog(JSONLStorage(path))``:
    read, JSON-parse and base64-decode every line, hash every leaf) and runs
    ``verify_against(checkpoint)``, which recomputes the root over all leaf hashes and
    compares it. ``verify_all_entries`` is not called: on a freshly opened log it would
    only re-hash the payloads it has just hashed, so it can never fail there.
    """

    name = "tamperlog"

    def __init__(self) -> None:
        self._path: Path | None = None
        self._fd: int | None = None
        self._log: tamperlog.AppendOnlyLog | None = None
        self._checkpoint: tamperlog.Checkpoint | None = None

    def open(self, directory: Path) -> None:
        self._path = directory / "log.jsonl"
        self._fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.fsync(self._fd)
        fsync_directory(directory)
        self._log = tamperlog.AppendOnlyLog(tamperlog.JSONLStorage(self._path))
        self._checkpoint = None

    def append(self, events: Sequence[Event]) -> None:
        assert self._log is not None and self._fd is not None, "open() first"
        append_json = self._log.append_json
        for event in events:
            append_json(event)
        os.fsync(self._fd)

    def checkpoint(self) -> None:
        assert self._log is not None, "open() first"
        self._checkpoint = self._log.checkpoint()

    def verify_all(self) -> int:
        assert self._path is not None and self._checkpoint is not None, "checkpoint() first"
        fresh = tamperlog.AppendOnlyLog(tamperlog.JSONLStorage(self._path))
        fresh.verify_against(self._checkpoint)  # raises ProofError on any mismatch
        return len(fresh)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
        self._fd = None
        self._log = None


# --------------------------------------------------------------------------- auditchain


JournalMode = Literal["wal", "delete"]


class AuditchainSqliteSubject:
    """``auditchain`` 0.3.0: ``AuditLog`` over ``SqliteBackend``, driven on one event loop.

    What auditchain does on its own (``auditchain/backends/sqlite.py``, ``auditchain/log.py``):

    * ``SqliteBackend`` opens the database with plain ``sqlite3.connect`` and sets only
      ``busy_timeout``: SQLite's defaults apply, i.e. ``journal_mode=DELETE`` and
      ``synchronous=FULL`` (this build: ``DEFAULT_SYNCHRONOUS=2``). Every ``append`` is one
      INSERT and ``commit()``; ``append_many`` is one ``executemany`` and one ``commit()``,
      its batch API, used here for calls of more than one event.
    * With DELETE + FULL a commit fsyncs the journal and the database, and commits by
      unlinking the journal *without* fsyncing the directory; SQLite documents that only
      ``synchronous=EXTRA`` adds that directory fsync, so a power loss just after
      ``commit()`` returns can roll the transaction back. So as shipped an acknowledged
      append is not strictly durable.
    * Each record is chained: ``hash = SHA-256(prev_hash || 0x00 || payload JSON)`` (no
      ``seal_key`` here, so plain SHA-256, its cheapest mode); Merkle roots (RFC 6962) are
      computed only by ``checkpoint()``, ``verify()`` and proofs.
    * The API is async; every backend call goes through ``asyncio.to_thread``.

    What this adapter configures (after ``AuditLog.init()``, on the backend's connection,
    then read back and checked):

    * ``journal_mode="wal"`` (default): ``PRAGMA journal_mode=WAL`` and
      ``PRAGMA synchronous=FULL``: each commit appends to the WAL and fsyncs it before
      returning, which is durable, and is the fastest durable SQLite setting; so the peer
      is measured at its best durable configuration, not its shipped one.
    * ``journal_mode="delete"``: keeps the shipped rollback journal and sets
      ``PRAGMA synchronous=EXTRA`` (the one-line change that makes the shipped mode
      durable).

    Calls run on one ``asyncio.Runner`` kept for the whole run, rather than
    ``SyncAuditLog``'s ``asyncio.run`` per call, so no event loop is built per append.

    Event mapping: ``actor`` = actor id, ``action`` = ``event_type``, ``subject`` =
    ``"<target type>:<target id>"`` (or ``""``), ``metadata`` = the whole event, so the
    stored record carries every byte of it.

    Full verification: ``checkpoint`` takes ``AuditLog.checkpoint()`` (last record's hash
    plus the Merkle root over all records); ``verify_all`` runs
    ``AuditLog.verify(checkpoint=...)``: read every row, parse its metadata JSON, recompute
    every chained hash, recompute the Merkle root and compare with the checkpoint.
    """

    def __init__(self, journal_mode: JournalMode = "wal") -> None:
        self.journal_mode: JournalMode = journal_mode
        self.name = (
            "auditchain (sqlite)" if journal_mode == "wal" else "auditchain (sqlite, DELETE)"
        )
        self._runner: asyncio.Runner | None = None
        self._log: auditchain.AuditLog | None = None
        self._checkpoint: auditchain.Checkpoint | None = None

    def open(self, directory: Path) -> None:
        backend = auditchain.SqliteBackend(directory / "audit.sqlite")
        self._runner = asyncio.Runner()
        self._log = auditchain.AuditLog(backend)
        self._runner.run(self._log.init())
        conn: sqlite3.Connection | None = backend._conn
        assert conn is not None
        if self.journal_mode == "wal":
            want_journal, want_sync = "wal", 2  # FULL
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
        else:
            want_journal, want_sync = "delete", 3  # EXTRA
            conn.execute("PRAGMA synchronous=EXTRA")
        journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
        sync = conn.execute("PRAGMA synchronous").fetchone()[0]
        if (journal, sync) != (want_journal, want_sync):
            raise RuntimeError(f"auditchain sqlite is journal_mode={journal} synchronous={sync}")
        fsync_directory(directory)
        self._checkpoint = None

    @staticmethod
    def _entry(event: Event) -> tuple[str, str, str, dict[str, Any]]:
        target = event.get("target")
        subject = f"{target['type']}:{target['id']}" if target else ""
        return event["actor"]["id"], event["event_type"], subject, dict(event)

    def append(self, events: Sequence[Event]) -> None:
        assert self._runner is not None and self._log is not None, "open() first"
        if len(events) == 1:
            actor, action, subject, metadata = self._entry(events[0])
            self._runner.run(self._log.append(actor, action, subject, metadata=metadata))
        else:
            self._runner.run(self._log.append_many([self._entry(e) for e in events]))

    def checkpoint(self) -> None:
        assert self._runner is not None and self._log is not None, "open() first"
        self._checkpoint = self._runner.run(self._log.checkpoint())

    def verify_all(self) -> int:
        assert self._runner is not None and self._log is not None, "open() first"
        assert self._checkpoint is not None, "checkpoint() first"
        report = self._runner.run(self._log.verify(checkpoint=self._checkpoint))
        if not report.ok:
            raise RuntimeError(f"auditchain verify failed: {report}")
        return report.records_checked

    def close(self) -> None:
        if self._runner is not None:
            if self._log is not None:
                self._runner.run(self._log.close())
            self._runner.close()
        self._runner = None
        self._log = None


def peer_ingest_subjects() -> list[IngestSubject]:
    """The peers for the ingest and verify rows, each at equal durability."""
    return [TamperlogSubject(), AuditchainSqliteSubject("wal")]


# ----------------------------------------------------------------------------- pymerkle


@dataclass(frozen=True, slots=True)
class _PymerkleProof:
    leaf_hash: bytes
    proof: pymerkle.InclusionProof


class PymerkleProofSubject:
    """``pymerkle`` 7.0.0 ``InmemoryTree``, RFC 6962 hashing, for inclusion proofs.

    Hashing: pymerkle's default ``security=True`` hashes a leaf as SHA-256(0x00 || data)
    and a node as SHA-256(0x01 || left || right), and its trees split at the largest power
    of two below the size, so its roots equal RFC 6962's (checked against tamperlog's root
    for every size 1..79). ``disable_security`` would drop the prefixes; it stays off.

    Backend: ``InmemoryTree`` keeps every node, so a proof reads stored digests;
    ``SqliteTree`` keeps only leaves and recomputes subtree roots (LRU-cached), so proofs
    at random indices in a 1M tree cost milliseconds. Measured on the benchmark machine
    at 1M leaves: in-memory build ~20 s, proof ~0.17 ms; SQLite build ~15 s, proof ~14 ms
    The in-memory tree is the fastest for proofs and is what is measured. It is not
    durable; that is pymerkle's cost model, not the benchmark's.

    Indices here are 0-based (pymerkle's are 1-based). ``prove`` returns the leaf hash and
    ``InclusionProof``; ``verify`` runs ``InclusionProof.verify`` with the expected index
    and size against the root taken right after ``build``.
    """

    name = "pymerkle"

    def __init__(self) -> None:
        self._tree: pymerkle.InmemoryTree | None = None
        self._root = b""
        self._size = 0

    def build(self, directory: Path, payloads: Iterable[bytes]) -> int:
        del directory  # in-memory
        tree = pymerkle.InmemoryTree(algorithm="sha256")
        # Two million node objects and no garbage: the cyclic GC would only rescan them.
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            size = tree.append_entries(payloads)
        finally:
            if was_enabled:
                gc.enable()
        self._tree, self._root, self._size = tree, tree.get_root(), size
        return int(size)

    def prove(self, index: int) -> object:
        assert self._tree is not None, "build() first"
        return _PymerkleProof(self._tree.get_leaf(index + 1), self._tree.prove_inclusion(index + 1))

    def verify(self, index: int, proof: object) -> None:
        assert isinstance(proof, _PymerkleProof)
        proof.proof.verify(proof.leaf_hash, self._root, index=index + 1, size=self._size)

    def close(self) -> None:
        self._tree = None
