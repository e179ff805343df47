"""Ingest: the sequencer (group commit) and the publisher (signed checkpoints).

An event is **sequenced** when the transaction holding it is durable: it has a ``seq`` and a
receipt. The same transaction extends the tree's tiles, so it is **integrated** at once. It
is **published** when a checkpoint signed by the log key covers it; the publisher signs one
every ``checkpoint_interval`` seconds when the tree grew, and refuses to sign a tree that is
not an append-only extension of the previous checkpoint.

One sequencer thread per log owns its right edge (next seq, last leaf hash, partial tiles).
Callers on any thread ``submit`` events and wait on a future; the sequencer drains every
pending request into one transaction, so many concurrent appends share one fsync.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from indelible.core import merkle
from indelible.core.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from indelible.core.entry import GENESIS_PREV_HASH, decode, related_refs, same_event, seal
from indelible.core.event import Event
from indelible.core.note import Signer
from indelible.core.tiles import TileAppender, TileNodes
from indelible.errors import (
    Conflict,
    DuplicateEventId,
    InconsistentTree,
    IndelibleError,
    Overloaded,
    StoreError,
    StoreLocked,
)
from indelible.storage.base import CheckpointRow, EntryRow, LogInfo, Store

__all__ = ["Publisher", "Receipt", "Sequencer"]

_logger = logging.getLogger("indelible.service")


def _take_lease(store: Store, info: LogInfo, wait: bool) -> None:
    """Take the log's write lease; held elsewhere, wait for it (saying so) or raise."""
    try:
        store.acquire_writer(info.log_id, wait=False)
    except StoreLocked:
        if not wait:
            raise
        _logger.warning(
            "log %r is written by another process: waiting for its write lease", info.name
        )
        store.acquire_writer(info.log_id, wait=True)
        _logger.warning("took the write lease of log %r", info.name)


Clock = Callable[[], int]
RandomBytes = Callable[[int], bytes]


@dataclass(frozen=True, slots=True)
class Receipt:
    """Proof of acknowledgement: returned only after the entry is durable."""

    event_id: str
    seq: int
    leaf_hash: bytes

    def to_dict(self) -> dict[str, Any]:
        return {"event_id": self.event_id, "seq": self.seq, "leaf_hash": self.leaf_hash.hex()}


@dataclass(slots=True)
class _Request:
    events: Sequence[Event]
    future: Future[list[Receipt]]


@dataclass(slots=True)
class _Plan:
    """What one group commit will do: new events in seq order, and each request's answer."""

    new: list[Event]
    answers: list[tuple[_Request, list[Receipt | int]]]  # int = position in `new`


class Sequencer:
    """Assigns seqs and commits batches durably; one per log per process."""

    def __init__(
        self,
        store: Store,
        log: LogInfo,
        *,
        clock_ms: Clock,
        random_bytes: RandomBytes,
        max_batch: int = 10_000,
        max_pending: int = 100_000,
        wait_for_lease: bool = False,
        ack_before_commit: bool = False,
    ) -> None:
        self._store, self._log = store, log
        self._clock, self._random = clock_ms, random_bytes
        self._max_batch, self._max_pending = max_batch, max_pending
        # Deliberately broken mode for the crash suite only: acks before the commit.
        self._ack_before_commit = ack_before_commit
        _take_lease(store, log, wait_for_lease)
        self._cv = threading.Condition()
        self._commit_lock = threading.Lock()  # one commit at a time owns the right edge
        self._pending: deque[_Request] = deque()
        self._pending_events = 0
        self._closing = False
        self._halted: StoreError | None = None
        self.failures = 0  # commits that failed (the alert engine raises store_write_failed)
        self.last_failure: str | None = None
        self._last_received = 0
        self._load()
        self._thread = threading.Thread(
            target=self._run, name=f"indelible-sequencer-{log.name}", daemon=True
        )
        self._thread.start()

    # ---- public
    @property
    def halted(self) -> StoreError | None:
        """Why the sequencer refuses every request, or None while it is healthy."""
        return self._halted

    @property
    def size(self) -> int:
        """Entries durably sequenced (and integrated) so far."""
        return self._size

    @property
    def pending_events(self) -> int:
        """Events queued and not yet committed."""
        return self._pending_events

    def submit(self, events: Sequence[Event]) -> Future[list[Receipt]]:
        """Queue events as one all-or-nothing request; the future resolves after commit."""
        return self._enqueue(events, wake=True)

    def _enqueue(self, events: Sequence[Event], *, wake: bool) -> Future[list[Receipt]]:
        future: Future[list[Receipt]] = Future()
        if not events:
            future.set_result([])
            return future
        with self._cv:
            if self._halted is not None:
                raise self._halted
            if self._closing:
                raise StoreError("the sequencer is shut down")
            if self._pending_events + len(events) > self._max_pending:
                raise Overloaded(
                    f"ingest queue full ({self._pending_events} events pending)", retry_after=1.0
                )
            self._pending.append(_Request(events, future))
            self._pending_events += len(events)
            if wake:
                self._cv.notify()
        return future

    def append(self, events: Sequence[Event], timeout: float | None = None) -> list[Receipt]:
        """Submit and wait: returns receipts only once the events are durable.

        Leader/follower group commit: a caller that finds no commit under way commits the
        pending requests itself (its own and any others'), sparing the hand-off to the writer
        thread; otherwise it waits while the current committer, or the writer thread, does.
        """
        future = self._enqueue(events, wake=False)
        if self._commit_lock.acquire(blocking=False):
            try:
                while not future.done() and (requests := self._take_nowait()):
                    self._commit(requests)
            finally:
                self._commit_lock.release()
        self._wake_if_pending()
        return future.result(timeout)

    def _wake_if_pending(self) -> None:
        """Requests queued while a caller led a commit must not wait for the next arrival."""
        with self._cv:
            if self._pending:
                self._cv.notify()

    def close(self) -> None:
        """Finish every pending request, then stop and release the write lease."""
        with self._cv:
            self._closing = True
            self._cv.notify()
        self._thread.join()
        self._store.release_writer(self._log.log_id)

    # ---- the writer thread
    def _load(self) -> None:
        size = self._store.tree_size(self._log.log_id)
        edge = self._store.get_tiles(self._log.log_id, TileAppender.right_edge(size))
        self._appender = TileAppender(size, edge)
        self._size = size
        self._last_hash = (
            self._store.get_entry(self._log.log_id, size - 1).leaf_hash
            if size
            else GENESIS_PREV_HASH
        )

    def _wait_for_work(self) -> bool:
        """Block until requests are pending; False once shut down (or halted) and drained."""
        with self._cv:
            while not self._pending and not self._closing and self._halted is None:
                self._cv.wait()
            return bool(self._pending) and self._halted is None

    def _take_nowait(self) -> list[_Request]:
        """Pop up to ``max_batch`` events' worth of requests (always the first one queued);
        requests their callers cancelled are dropped, so the result may be empty."""
        with self._cv:
            taken: list[_Request] = []
            count = 0
            while self._pending and (
                not taken or count + len(self._pending[0].events) <= self._max_batch
            ):
                request = self._pending.popleft()
                self._pending_events -= len(request.events)
                # From here on a caller's cancel cannot undo an answer after the commit.
                if request.future.set_running_or_notify_cancel():
                    taken.append(request)
                    count += len(request.events)
            return taken

    def _run(self) -> None:
        while self._wait_for_work():
            with self._commit_lock:
                requests = self._take_nowait()
                if requests:
                    self._commit(requests)

    def _halt(self, cause: BaseException) -> None:
        """The right edge cannot be re-read: refuse every request rather than guess."""
        halted = StoreError(f"sequencer halted: cannot re-read the log's right edge: {cause}")
        with self._cv:
            self._halted = halted
            while self._pending:
                request = self._pending.popleft()
                if not request.future.done():
                    request.future.set_exception(halted)
            self._pending_events = 0

    def _commit(self, requests: list[_Request]) -> None:
        """One group commit. Idempotency is optimistic: the unique event_id index catches a
        resubmission, and only then is the batch planned again against the stored entries."""
        answered = False
        try:
            try:
                plan, rows = self._write(requests, lookup=False)
            except DuplicateEventId:
                self._load()
                plan, rows = self._write(requests, lookup=True)
            if not self._ack_before_commit:
                self._answer(plan, rows)
            answered = True
        except BaseException as exc:
            failure = (
                exc if isinstance(exc, IndelibleError) else StoreError(f"append failed: {exc}")
            )
            self.failures += 1
            self.last_failure = f"[{failure.code}] {failure.message}"
            if not answered:
                for request in requests:
                    if not request.future.done():
                        request.future.set_exception(failure)
            try:
                self._load()  # the in-memory right edge may be ahead of the store: reread it
            except BaseException as cause:
                self._halt(cause)

    def _write(self, requests: list[_Request], *, lookup: bool) -> tuple[_Plan, list[EntryRow]]:
        plan = self._plan(requests, lookup=lookup)
        rows = self._seal(plan.new)
        tiles = self._appender.append([row.leaf_hash for row in rows])
        if self._ack_before_commit:
            self._answer(plan, rows)  # the deliberately broken mode: ack, then commit
        if rows:
            self._store.append(self._log.log_id, self._size, rows, tiles)
        self._size += len(rows)
        if rows:
            self._last_hash = rows[-1].leaf_hash
        return plan, rows

    def _plan(self, requests: list[_Request], *, lookup: bool) -> _Plan:
        existing: dict[str, EntryRow] = {}
        if lookup:
            ids = [event.event_id for request in requests for event in request.events]
            existing = self._store.find_event_ids(self._log.log_id, ids)
        plan = _Plan(new=[], answers=[])
        positions: dict[str, int] = {}
        for request in requests:
            if request.future.done():  # refused in an earlier planning of this batch
                continue
            try:
                answer, added = self._plan_request(request, existing, positions, plan.new)
            except Conflict as exc:
                request.future.set_exception(exc)
                continue
            for event in added:
                positions[event.event_id] = len(plan.new)
                plan.new.append(event)
            plan.answers.append((request, answer))
        return plan

    def _plan_request(
        self,
        request: _Request,
        existing: dict[str, EntryRow],
        positions: dict[str, int],
        new: list[Event],
    ) -> tuple[list[Receipt | int], list[Event]]:
        """Answer one request against the store and the batch so far; all or nothing."""
        answer: list[Receipt | int] = []
        added: list[Event] = []
        local: dict[str, int] = {}
        base = len(new)
        for event in request.events:
            row = existing.get(event.event_id)
            if row is not None:
                if not same_event(event, decode(row.leaf, row.personal)):
                    raise _conflict(event, row.seq)
                answer.append(Receipt(event.event_id, row.seq, row.leaf_hash))
                continue
            position = positions.get(event.event_id, local.get(event.event_id))
            if position is None:
                position = base + len(added)
                local[event.event_id] = position
                added.append(event)
            else:
                prior = new[position] if position < base else added[position - base]
                if prior.canonical != event.canonical:
                    raise _conflict(event, self._size + position)
            answer.append(position)
        return answer, added

    def _seal(self, events: list[Event]) -> list[EntryRow]:
        received = max(self._clock(), self._last_received)
        self._last_received = received
        rows: list[EntryRow] = []
        prev = self._last_hash
        seq = self._size
        for event in events:
            sealed = seal(
                event, seq=seq, received_at_ms=received, prev_hash=prev, random_bytes=self._random
            )
            refs = related_refs(event.body)
            rows.append(
                EntryRow(seq, sealed.leaf, sealed.leaf_hash, sealed.index, sealed.personal, refs)
            )
            prev = sealed.leaf_hash
            seq += 1
        return rows

    def _answer(self, plan: _Plan, rows: list[EntryRow]) -> None:
        for request, answer in plan.answers:
            receipts = [
                item
                if isinstance(item, Receipt)
                else Receipt(plan.new[item].event_id, rows[item].seq, rows[item].leaf_hash)
                for item in answer
            ]
            if not request.future.done():
                request.future.set_result(receipts)


def _conflict(event: Event, seq: int) -> Conflict:
    return Conflict(
        f"event_id {event.event_id} was already recorded at seq {seq} with different content",
        event_id=event.event_id,
        seq=seq,
    )


class Publisher:
    """Signs a checkpoint whenever the tree grew; never for an inconsistent tree."""

    def __init__(
        self,
        store: Store,
        log: LogInfo,
        signer: Signer,
        *,
        clock_ms: Clock,
        interval: float = 1.0,
    ) -> None:
        self._store, self._log, self._signer = store, log, signer
        self._clock, self._interval = clock_ms, interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.last_error: IndelibleError | None = None

    def publish(self) -> CheckpointRow | None:
        """Sign and store a checkpoint for the current tree if it grew; return it."""
        with self._lock:
            log_id = self._log.log_id
            size = self._store.tree_size(log_id)
            last = self._store.latest_checkpoint(log_id)
            if size == 0 or (last is not None and last.size == size):
                return None
            nodes = TileNodes(lambda level, index: self._store.get_tile(log_id, level, index), size)
            root = merkle.root(size, nodes.get_node)
            if last is not None:
                self._check_extends(last, size, root, nodes)
            note = sign_checkpoint(Checkpoint(self._log.origin, size, root), self._signer)
            row = CheckpointRow(size, root, note, self._clock())
            self._store.add_checkpoint(log_id, row)
            return row

    def _check_extends(self, last: CheckpointRow, size: int, root: bytes, nodes: TileNodes) -> None:
        # The previous checkpoint's root is taken from its signed note, not from a column.
        held, _ = open_checkpoint(last.note, self._signer.verifier(), self._log.origin)
        if size < held.size:
            raise InconsistentTree(
                f"tree has {size} entries but checkpoint {held.size} was signed: refusing to sign",
                seq=size,
            )
        proof = merkle.consistency_proof(held.size, size, nodes.get_node)
        try:
            merkle.verify_consistency(held.size, size, held.root, root, proof)
        except IndelibleError as exc:
            raise InconsistentTree(
                f"tree of size {size} does not extend checkpoint {held.size}: refusing to sign",
                expected=held.root.hex(),
                computed=root.hex(),
            ) from exc

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"indelible-publisher-{self._log.name}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.publish()
                self.last_error = None
            except IndelibleError as exc:
                self.last_error = exc

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
