"""The sequencer and publisher against a real SQLite store."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import pytest

from indelible.core.checkpoint import open_checkpoint
from indelible.core.event import Event, validate_event
from indelible.errors import Conflict, InconsistentTree, Overloaded, StoreError
from indelible.service.ingest import Publisher, Receipt, Sequencer
from indelible.service.logs import OpenLog, init_log
from indelible.storage import open_store
from indelible.storage.sqlite import SQLiteStore
from tests.factories import billing_event


def now() -> int:
    return time.time_ns() // 1_000_000


def ev(n: int, **overrides: object) -> Event:
    return validate_event(billing_event(n, **overrides), now_ms=now())


class CountingStore(SQLiteStore):
    """The real SQLite store, counting its append transactions."""

    appends = 0

    def append(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.appends += 1
        return super().append(*args, **kwargs)


@dataclass
class Harness:
    store: CountingStore
    opened: OpenLog
    sequencer: Sequencer

    def publisher(self) -> Publisher:
        assert self.opened.signer is not None
        return Publisher(self.store, self.opened.info, self.opened.signer, clock_ms=now)


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    store = CountingStore(tmp_path / "log.db")
    opened = init_log(
        store, tmp_path / "keys", "acme", "example.com/acme", clock_ms=now, random_bytes=os.urandom
    )
    sequencer = Sequencer(store, opened.info, clock_ms=now, random_bytes=os.urandom)
    yield Harness(store, opened, sequencer)
    sequencer.close()
    store.close()


def test_receipts_come_after_the_commit_and_name_the_durable_entry(
    harness: Harness, tmp_path: Path
) -> None:
    receipts = harness.sequencer.append([ev(0), ev(1), ev(2)])
    assert [r.seq for r in receipts] == [0, 1, 2]
    # a separate connection, as after a restart, sees exactly what the receipts promise
    other = open_store(f"sqlite:///{tmp_path / 'log.db'}", migrate=False)
    try:
        for receipt in receipts:
            row = other.get_entry(harness.opened.info.log_id, receipt.seq)
            assert (row.index.event_id, row.leaf_hash) == (receipt.event_id, receipt.leaf_hash)
    finally:
        other.close()


def test_concurrent_appends_share_group_commits(harness: Harness) -> None:
    results: list[list[Receipt]] = []
    lock = threading.Lock()

    def client(number: int) -> None:
        for k in range(10):
            got = harness.sequencer.append([ev(number * 1000 + k)])
            with lock:
                results.append(got)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seqs = sorted(r.seq for batch in results for r in batch)
    assert seqs == list(range(160))
    assert harness.store.appends < 160, "every request paid its own fsync"


def test_the_same_event_again_returns_the_original_receipt(harness: Harness) -> None:
    first = harness.sequencer.append([ev(1), ev(2)])
    again = harness.sequencer.append([ev(2), ev(1)])
    assert again == [first[1], first[0]]
    assert harness.sequencer.size == 2


def test_the_same_event_with_personal_values_is_still_idempotent(harness: Harness) -> None:
    first = harness.sequencer.append([ev(5, personal=True)])
    assert harness.sequencer.append([ev(5, personal=True)]) == first


def test_duplicates_inside_one_batch_get_one_entry(harness: Harness) -> None:
    receipts = harness.sequencer.append([ev(1), ev(1), ev(2)])
    assert receipts[0] == receipts[1]
    assert harness.sequencer.size == 2


def test_a_changed_event_with_a_known_id_is_a_conflict_and_changes_nothing(
    harness: Harness,
) -> None:
    harness.sequencer.append([ev(1)])
    with pytest.raises(Conflict) as caught:
        harness.sequencer.append([ev(2), ev(1, reason="something else")])
    assert caught.value.seq == 0
    assert harness.sequencer.size == 1  # ev(2) was not written either: all or nothing


def test_a_conflict_inside_one_request_is_refused(harness: Harness) -> None:
    with pytest.raises(Conflict):
        harness.sequencer.append([ev(1), ev(1, outcome="failure")])
    assert harness.sequencer.size == 0


def test_a_conflicting_request_does_not_fail_its_neighbours(harness: Harness) -> None:
    harness.sequencer.append([ev(1)])
    # hold the writer so both requests land in one group commit
    with harness.store._write_lock:
        bad = harness.sequencer.submit([ev(1, reason="changed")])
        good = harness.sequencer.submit([ev(2)])
        time.sleep(0.05)
    with pytest.raises(Conflict):
        bad.result(5)
    assert [r.seq for r in good.result(5)] == [1]


def test_a_conflict_and_a_stored_duplicate_in_one_group_commit(harness: Harness) -> None:
    first = harness.sequencer.append([ev(1)])
    with harness.store._write_lock:  # all three requests land in one group commit
        clash = harness.sequencer.submit([ev(7), ev(7, reason="changed")])
        replay = harness.sequencer.submit([ev(1)])
        fresh = harness.sequencer.submit([ev(2)])
        time.sleep(0.05)
    with pytest.raises(Conflict):
        clash.result(5)
    assert replay.result(5) == first
    assert [r.seq for r in fresh.result(5)] == [1]
    assert harness.sequencer.size == 2


def test_a_full_queue_answers_overloaded(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "small.db")
    opened = init_log(
        store, tmp_path / "keys", "acme", "example.com/acme", clock_ms=now, random_bytes=os.urandom
    )
    sequencer = Sequencer(store, opened.info, clock_ms=now, random_bytes=os.urandom, max_pending=5)
    try:
        futures: list[Future[list[Receipt]]] = []
        with store._write_lock:  # the writer is stuck: requests pile up
            futures.append(sequencer.submit([ev(0)]))
            time.sleep(0.05)
            futures.append(sequencer.submit([ev(n) for n in range(1, 6)]))
            with pytest.raises(Overloaded):
                sequencer.submit([ev(9)])
        assert sum(len(f.result(5)) for f in futures) == 6
    finally:
        sequencer.close()
        store.close()


def test_a_failed_commit_fails_its_requests_and_the_sequencer_recovers(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "busy.db", busy_timeout=0.2)
    opened = init_log(
        store, tmp_path / "keys", "acme", "example.com/acme", clock_ms=now, random_bytes=os.urandom
    )
    sequencer = Sequencer(store, opened.info, clock_ms=now, random_bytes=os.urandom)
    try:
        sequencer.append([ev(0)])
        blocker = sqlite3.connect(tmp_path / "busy.db", isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")  # another process holds the database
        with pytest.raises(StoreError, match="locked"):
            sequencer.append([ev(1)])
        blocker.execute("ROLLBACK")
        blocker.close()
        assert [r.seq for r in sequencer.append([ev(1), ev(2)])] == [1, 2]
    finally:
        sequencer.close()
        store.close()


def test_a_store_moved_behind_the_lease_halts_the_sequencer(
    harness: Harness, tmp_path: Path
) -> None:
    harness.sequencer.append([ev(0)])
    # a row written behind the lease, outside the tree: the sequencer must not guess
    conn = sqlite3.connect(tmp_path / "log.db")
    row = conn.execute("SELECT * FROM entries WHERE seq = 0").fetchone()
    conn.execute(
        f"INSERT INTO entries VALUES ({','.join('?' * len(row))})",
        (row[0], 1, *row[2:4], "01890000-0000-7000-8000-0000000000aa", *row[5:]),
    )
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="another writer"):
        harness.sequencer.append([ev(1)])
    with pytest.raises(StoreError, match="halted"):
        harness.sequencer.append([ev(2)])


def test_the_publisher_signs_only_when_the_tree_grew(harness: Harness) -> None:
    publisher = harness.publisher()
    assert publisher.publish() is None  # empty log
    harness.sequencer.append([ev(n) for n in range(300)])
    row = publisher.publish()
    assert row is not None and row.size == 300
    checkpoint, _ = open_checkpoint(row.note, harness.opened.verifier, "example.com/acme")
    assert (checkpoint.size, checkpoint.root) == (300, row.root)
    assert publisher.publish() is None
    harness.sequencer.append([ev(300)])
    assert publisher.publish() is not None


def test_the_publisher_refuses_a_tree_that_does_not_extend_its_checkpoint(
    harness: Harness, tmp_path: Path
) -> None:
    publisher = harness.publisher()
    harness.sequencer.append([ev(n) for n in range(20)])
    assert publisher.publish() is not None
    harness.sequencer.append([ev(n) for n in range(20, 30)])
    conn = sqlite3.connect(tmp_path / "log.db")
    tile = bytearray(conn.execute("SELECT hashes FROM tiles WHERE level = 0").fetchone()[0])
    tile[0] ^= 1  # history under the last checkpoint changed
    conn.execute("UPDATE tiles SET hashes = ? WHERE level = 0", (bytes(tile),))
    conn.commit()
    conn.close()
    with pytest.raises(InconsistentTree):
        publisher.publish()
    assert harness.store.latest_checkpoint(harness.opened.info.log_id).size == 20  # type: ignore[union-attr]


def test_the_background_publisher_covers_new_entries_within_its_interval(
    harness: Harness,
) -> None:
    assert harness.opened.signer is not None
    publisher = Publisher(
        harness.store, harness.opened.info, harness.opened.signer, clock_ms=now, interval=0.05
    )
    publisher.start()
    try:
        harness.sequencer.append([ev(n) for n in range(5)])
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            latest = harness.store.latest_checkpoint(harness.opened.info.log_id)
            if latest is not None and latest.size == 5:
                break
            time.sleep(0.01)
        else:
            raise AssertionError("no checkpoint covered the new entries")
    finally:
        publisher.stop()


def test_a_second_sequencer_for_the_same_log_is_refused(harness: Harness, tmp_path: Path) -> None:
    other = SQLiteStore(tmp_path / "log.db")
    try:
        with pytest.raises(StoreError):
            Sequencer(other, harness.opened.info, clock_ms=now, random_bytes=os.urandom)
    finally:
        other.close()


def test_a_cancelled_request_is_never_written(harness: Harness) -> None:
    with harness.store._write_lock:
        harness.sequencer.submit([ev(0)])
        time.sleep(0.05)  # the writer now holds ev(0) and waits for the store
        dropped = harness.sequencer.submit([ev(1)])
        assert dropped.cancel()  # still queued: the caller gave up before it was taken
        kept = harness.sequencer.submit([ev(2)])
    assert [r.seq for r in kept.result(5)] == [1]
    assert harness.sequencer.size == 2
    assert harness.sequencer.halted is None


def test_a_taken_request_can_no_longer_be_cancelled(harness: Harness) -> None:
    with harness.store._write_lock:
        taken = harness.sequencer.submit([ev(0)])
        time.sleep(0.05)
        assert not taken.cancel()  # its commit is under way: the answer will come
    assert [r.seq for r in taken.result(5)] == [0]
