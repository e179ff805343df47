"""The storage contract every Indelible store implements.

A store keeps, per log: the entries (leaf bytes plus lookup-hint columns), the personal
values beside them, the tree as C2SP tlog-tiles, and the signed checkpoints. The service
never trusts a store: ``indelible verify`` recomputes everything from the leaf bytes.

Contract (each store's tests run ``tests/storage/contract.py``):

1. ``append`` MUST write the entries, their personal values and the changed tiles in ONE
   transaction, and MUST return only after that transaction is durable (fsync'd). If it
   raises, nothing of the batch may be visible afterwards.
2. ``append`` MUST refuse (``StoreError``) when the log's current size is not
   ``expected_size``: a second writer, or state that moved underneath the sequencer.
3. Entries and checkpoints are append-only: the store MUST refuse UPDATE and DELETE on them
   at the database level (triggers), not only in this code.
4. ``event_id`` is unique per log; seqs are contiguous from 0. ``append`` of a batch that
   repeats a stored event_id MUST raise ``DuplicateEventId`` and write nothing.
5. Checkpoints are keyed by size; adding a second checkpoint for a size that already has
   one MUST fail.
6. Reads return exactly the bytes written.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from indelible.core.entry import IndexColumns, PersonalValue

__all__ = [
    "CheckpointRow",
    "EntryRow",
    "LogInfo",
    "Store",
]


@dataclass(frozen=True, slots=True)
class LogInfo:
    """One append-only log: one tenant's, with its own origin and verification key."""

    log_id: int
    name: str
    origin: str
    vkey: str
    created_at_ms: int


@dataclass(frozen=True, slots=True)
class EntryRow:
    """An entry as the store holds it: the leaf, its hash, and the lookup-hint columns."""

    seq: int
    leaf: bytes
    leaf_hash: bytes
    index: IndexColumns
    personal: tuple[PersonalValue, ...] = ()


@dataclass(frozen=True, slots=True)
class CheckpointRow:
    size: int
    root: bytes
    note: str
    created_at_ms: int


class Store(Protocol):
    """What the service needs from a store. See the module docstring for the contract."""

    url: str

    # ---- logs and settings
    def create_log(self, name: str, origin: str, vkey: str, created_at_ms: int) -> LogInfo: ...
    def get_log(self, name: str) -> LogInfo: ...
    def list_logs(self) -> list[LogInfo]: ...

    # ---- the writer side (one sequencer per log)
    def acquire_writer(self, log_id: int, *, wait: bool) -> None:
        """Take the log's write lease for this process (``StoreLocked`` if held elsewhere)."""
        ...

    def release_writer(self, log_id: int) -> None: ...

    def append(
        self,
        log_id: int,
        expected_size: int,
        entries: Sequence[EntryRow],
        tiles: Mapping[tuple[int, int], bytes],
    ) -> None: ...

    def add_checkpoint(self, log_id: int, row: CheckpointRow) -> None: ...

    # ---- reads
    def tree_size(self, log_id: int) -> int: ...
    def get_tile(self, log_id: int, level: int, index: int) -> bytes: ...
    def get_tiles(
        self, log_id: int, keys: Sequence[tuple[int, int]]
    ) -> dict[tuple[int, int], bytes]: ...

    def tile_keys(self, log_id: int) -> list[tuple[int, int]]:
        """Every stored tile's (level, index), ordered; no contents are read."""
        ...

    def get_entry(self, log_id: int, seq: int) -> EntryRow: ...
    def find_event_ids(self, log_id: int, event_ids: Sequence[str]) -> dict[str, EntryRow]: ...
    def iter_entries(
        self, log_id: int, start: int = 0, end: int | None = None
    ) -> Iterator[EntryRow]: ...

    def latest_checkpoint(self, log_id: int) -> CheckpointRow | None: ...
    def get_checkpoint(self, log_id: int, size: int) -> CheckpointRow: ...
    def list_checkpoints(self, log_id: int) -> list[CheckpointRow]: ...

    def close(self) -> None: ...
