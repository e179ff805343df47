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
7. ``query_entries`` returns entries matching every given filter, ordered by seq (ascending
   or descending), strictly after the cursor seq, never beyond ``max_seq``, at most ``limit``;
   ``count_entries`` counts the same set without a limit. ``touching`` matches the entry's
   target or any of its ``refs`` (related records).
8. Anchors (timestamp tokens, cosignatures) are append-only and keyed by (size, kind,
   authority); one for a checkpoint size that was never stored MUST fail, and so MUST a
   second one with the same key.
9. API keys are never deleted; ``revoke_api_key`` sets the revocation time once and reports
   whether it did.
10. Alert state (``alert_state``): ``save_alert_state`` MUST apply every change (None
    deletes the key) and insert every delivery in ONE transaction, durable before it
    returns; a delivery whose (alert_id, sink) is already stored is left as it is (a
    follower re-evaluating after a crash enqueues nothing twice). Delivery rows are never
    deleted; ``update_delivery`` changes only status, attempts, next attempt, last error and
    update time.
11. ``read_leaves`` returns the entries ``start <= seq < end`` (clipped to the log) in seq
    order as (seq, received_at_ms, leaf, personal values): exactly the bytes and values
    ``iter_entries`` gives, without the other columns or references (the alert follower's
    read path).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from indelible.core.entry import IndexColumns, PersonalValue

__all__ = [
    "AnchorRow",
    "ApiKeyRow",
    "CheckpointRow",
    "DeliveryRow",
    "EntryQuery",
    "EntryRow",
    "LeafRow",
    "LogInfo",
    "Store",
]

LeafRow = tuple[int, int, bytes, tuple[PersonalValue, ...]]
"""(seq, received_at_ms, leaf, personal values) of one entry: what the alert follower reads."""


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
    refs: tuple[tuple[str, str], ...] = ()  # (type, id) of each related record, no repeats


@dataclass(frozen=True, slots=True)
class CheckpointRow:
    size: int
    root: bytes
    note: str
    created_at_ms: int


@dataclass(frozen=True, slots=True)
class AnchorRow:
    """Evidence held outside about the checkpoint of ``size``.

    ``kind`` is ``rfc3161`` (``authority`` = the TSA's URL, ``evidence`` = the DER
    TimeStampResp) or ``cosignature`` (``authority`` = the witness key id ``name+hash``,
    ``evidence`` = the UTF-8 cosignature line).
    """

    size: int
    kind: str
    authority: str
    evidence: bytes
    created_at_ms: int


@dataclass(frozen=True, slots=True)
class EntryQuery:
    """A filter over one log's entries; None means "any". Times are epoch milliseconds,
    ranges half-open ``[from, to)``. ``event_type_prefix`` ends with a dot (``invoice.``)."""

    actor_id: str | None = None
    actor_type: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    touching: tuple[str, str] | None = None
    event_type: str | None = None
    event_type_prefix: str | None = None
    action: str | None = None
    outcome: str | None = None
    request_id: str | None = None
    ip: str | None = None
    occurred_from_ms: int | None = None
    occurred_to_ms: int | None = None
    received_from_ms: int | None = None
    received_to_ms: int | None = None
    after_seq: int | None = None  # the keyset cursor: strictly after it in the chosen order
    max_seq: int | None = None  # a snapshot bound: nothing beyond it (inclusive)
    descending: bool = False
    limit: int = 100


@dataclass(frozen=True, slots=True)
class ApiKeyRow:
    """An API key as stored: the SHA-256 of its secret, never the secret."""

    key_id: str
    log_id: int
    name: str
    role: str
    secret_hash: bytes
    created_at_ms: int
    created_by: str | None = None
    revoked_at_ms: int | None = None


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    """One alert to one notification sink: ``pending`` (retried at ``next_attempt_ms``),
    ``delivered`` or ``dead`` (gave up after the sink's last attempt: a dead letter)."""

    alert_id: str
    sink: str
    seq: int  # the alert's entry in the log
    payload: bytes  # the JSON the sinks send
    status: str = "pending"
    attempts: int = 0
    next_attempt_ms: int = 0
    last_error: str | None = None
    created_at_ms: int = 0
    updated_at_ms: int = 0


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

    def read_leaves(self, log_id: int, start: int, end: int) -> list[LeafRow]:
        """Entries ``start <= seq < end`` as (seq, received_at_ms, leaf, personal values)."""
        ...

    def latest_checkpoint(self, log_id: int) -> CheckpointRow | None: ...
    def get_checkpoint(self, log_id: int, size: int) -> CheckpointRow: ...
    def list_checkpoints(self, log_id: int) -> list[CheckpointRow]: ...

    # ---- anchors
    def add_anchor(self, log_id: int, row: AnchorRow) -> None: ...
    def list_anchors(
        self, log_id: int, *, size: int | None = None, kind: str | None = None
    ) -> list[AnchorRow]:
        """Anchors by size, then kind and authority; only those of ``size``/``kind`` if given."""
        ...

    def latest_anchor(self, log_id: int, kind: str, authority: str) -> AnchorRow | None:
        """The anchor of the largest size that ``authority`` gave, if any."""
        ...

    # ---- queries
    def query_entries(self, log_id: int, query: EntryQuery) -> list[EntryRow]: ...
    def count_entries(self, log_id: int, query: EntryQuery) -> int: ...
    def get_refs(self, log_id: int, start: int, end: int) -> dict[int, tuple[tuple[str, str], ...]]:
        """The stored related-record references of entries ``start <= seq < end``."""
        ...

    # ---- access: API keys and per-log settings
    def add_api_key(self, row: ApiKeyRow) -> None: ...
    def get_api_key(self, key_id: str) -> ApiKeyRow: ...
    def list_api_keys(self, log_id: int | None = None) -> list[ApiKeyRow]: ...
    def revoke_api_key(self, key_id: str, at_ms: int) -> bool: ...
    def get_log_settings(self, log_id: int) -> dict[str, str]: ...
    def set_log_setting(self, log_id: int, name: str, value: str) -> None: ...

    # ---- alerts: the follower's cursor and state, and deliveries to notification sinks
    def load_alert_state(self, log_id: int) -> dict[str, str]: ...
    def save_alert_state(
        self,
        log_id: int,
        changes: Mapping[str, str | None],
        deliveries: Sequence[DeliveryRow] = (),
    ) -> None: ...

    def due_deliveries(self, log_id: int, now_ms: int, limit: int) -> list[DeliveryRow]:
        """Pending deliveries whose next attempt is at or before ``now_ms``, oldest first."""
        ...

    def update_delivery(self, log_id: int, row: DeliveryRow) -> None: ...
    def list_deliveries(
        self, log_id: int, *, status: str | None = None, limit: int = 100
    ) -> list[DeliveryRow]:
        """Deliveries (of ``status`` if given), newest alert first."""
        ...

    def count_deliveries(self, log_id: int) -> dict[str, int]:
        """How many deliveries are in each status."""
        ...

    def close(self) -> None: ...
