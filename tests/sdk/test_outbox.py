"""The outbox on its own (no service): group commit, bounds and the three full policies,
the spill file, the lock, what survives a reopen."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import orjson
import pytest

from indelible.sdk import Client, Outbox, OutboxClosed, OutboxError, OutboxFull, OutboxLocked

ACTOR = {"id": "svc", "type": "service"}


def _items(n: int, start: int = 0) -> list[tuple[str, bytes]]:
    out = []
    for i in range(start, start + n):
        event_id = f"00000000-0000-7000-8000-{i:012d}"
        out.append((event_id, orjson.dumps({"event_id": event_id, "n": i})))
    return out


def _ids_in_file(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [r[0] for r in conn.execute("SELECT event_id FROM outbox ORDER BY id")]


def test_record_commits_with_wal_and_full_synchronous(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.sqlite3")
    try:
        mode = outbox._writer.execute("PRAGMA journal_mode").fetchone()[0]
        sync = outbox._writer.execute("PRAGMA synchronous").fetchone()[0]
        assert (mode, sync) == ("wal", 2)  # 2 = FULL: the WAL is fsync'd at each commit
    finally:
        outbox.close()


def test_concurrent_records_share_commits_and_all_are_stored(tmp_path: Path) -> None:
    client = Client(None, outbox=tmp_path / "o.sqlite3", default_actor=ACTOR)
    recorded: list[list[str]] = [[] for _ in range(8)]

    def worker(i: int) -> None:
        for n in range(100):
            recorded[i].append(client.record("test.grouped", data={"worker": i, "n": n}))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    commits = client.outbox.commits
    client.close()
    ids = _ids_in_file(tmp_path / "o.sqlite3")
    assert sorted(ids) == sorted(i for part in recorded for i in part)
    assert len(ids) == 800
    assert commits < 800, "every record() had its own commit: nothing was grouped"


def test_raise_policy_refuses_the_whole_call_when_full(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.sqlite3", max_events=5, when_full="raise")
    try:
        outbox.append(_items(4))
        with pytest.raises(OutboxFull) as caught:
            outbox.append(_items(2, start=4))
        assert caught.value.code == "outbox_full" and caught.value.pending == 4
        assert outbox.pending() == 4
        outbox.append(_items(1, start=4))
        assert outbox.pending() == 5
    finally:
        outbox.close()
    assert len(_ids_in_file(tmp_path / "o.sqlite3")) == 5


def test_byte_bound_counts_the_event_bytes(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.sqlite3", max_bytes=1 << 20, when_full="raise")
    big = [(f"00000000-0000-7000-8000-{i:012d}", b"x" * 300_000) for i in range(4)]
    try:
        outbox.append(big[:3])
        with pytest.raises(OutboxFull):
            outbox.append(big[3:])
        assert outbox.pending_bytes() == 900_000
    finally:
        outbox.close()


def test_block_policy_waits_for_room_then_times_out(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.sqlite3", max_events=3, block_timeout=0.3)
    try:
        outbox.append(_items(3))
        started = time.monotonic()
        with pytest.raises(OutboxFull):
            outbox.append(_items(1, start=3))
        assert 0.25 <= time.monotonic() - started < 3

        def make_room() -> None:
            time.sleep(0.1)
            outbox.acknowledge(outbox.peek(2, 1 << 20))

        helper = threading.Thread(target=make_room)
        helper.start()
        outbox.block_timeout = 10
        started = time.monotonic()
        outbox.append(_items(2, start=3))  # blocks until the "sender" made room
        helper.join()
        assert 0.05 <= time.monotonic() - started < 5
        assert outbox.pending() == 3
    finally:
        outbox.close()


def test_spill_policy_writes_aside_and_drains_back_in_order(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    outbox = Outbox(path, max_events=4, when_full="spill")
    outbox.append(_items(3))
    for i in range(3, 10):
        outbox.append(_items(1, start=i))
    assert (outbox.pending(), outbox.spilled()) == (10, 6)
    assert len((tmp_path / "o.sqlite3.spill").read_bytes().splitlines()) == 6
    outbox.close()

    outbox = Outbox(path, max_events=4, when_full="spill")  # the spill survives a restart
    try:
        assert (outbox.pending(), outbox.spilled()) == (10, 6)
        sent: list[str] = []
        while outbox.pending():
            rows = outbox.peek(10, 1 << 20)
            if not rows:
                assert outbox.drain_spill() > 0
                continue
            sent += [row.event_id for row in rows]
            outbox.acknowledge(rows)
        assert sent == [event_id for event_id, _ in _items(10)]
        assert not (tmp_path / "o.sqlite3.spill").exists()
    finally:
        outbox.close()


def test_a_torn_last_spill_line_was_never_acknowledged_and_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    outbox = Outbox(path, max_events=1, when_full="spill")
    outbox.append(_items(3))  # an empty outbox takes any one call
    outbox.append(_items(2, start=3))
    outbox.close()
    with open(tmp_path / "o.sqlite3.spill", "ab") as spill:
        spill.write(b'{"event_id": "half-writ')  # the process died mid-write
    outbox = Outbox(path, max_events=1, when_full="spill")
    try:
        assert outbox.spilled() == 2
    finally:
        outbox.close()


def test_a_second_process_cannot_open_the_same_outbox(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.sqlite3")
    try:
        with pytest.raises(OutboxLocked):
            Outbox(tmp_path / "o.sqlite3")
    finally:
        outbox.close()
    Outbox(tmp_path / "o.sqlite3").close()  # released on close


def test_records_survive_a_reopen_and_closed_outbox_refuses(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    client = Client(None, outbox=path, default_actor=ACTOR)
    event_id = client.record("test.kept")
    assert client.close() is False  # no service: not delivered, kept
    with pytest.raises(OutboxClosed):
        client.record("test.late")
    again = Client(None, outbox=path, default_actor=ACTOR)
    try:
        assert again.pending() == 1
        assert again.outbox.peek(10, 1 << 20)[0].event_id == event_id
    finally:
        again.close()


def test_rejected_and_meta_are_kept(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.sqlite3")
    try:
        outbox.append(_items(2))
        first, second = outbox.peek(10, 1 << 20)
        outbox.reject([(first, 422, "invalid_event", "why")])
        outbox.acknowledge([second])
        assert outbox.pending() == 0
        (kept,) = outbox.rejected()
        assert (kept.event_id, kept.status, kept.code, kept.reason) == (
            first.event_id,
            422,
            "invalid_event",
            "why",
        )
        assert kept.event == orjson.loads(first.body)
        assert outbox.get_meta("k") is None
        outbox.set_meta("k", "v1")
        outbox.set_meta("k", "v2")
        assert outbox.get_meta("k") == "v2"
    finally:
        outbox.close()


def test_bad_bounds_and_policies_are_refused(tmp_path: Path) -> None:
    for kwargs in ({"when_full": "drop"}, {"max_events": 0}, {"max_bytes": 1000}):
        with pytest.raises(ValueError):
            Outbox(tmp_path / "o.sqlite3", **kwargs)  # type: ignore[arg-type]


def test_a_failed_commit_raises_and_records_nothing(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.sqlite3", max_events=10, when_full="spill")
    try:
        outbox.append(_items(1))
        outbox._writer.close()  # the database is gone from under the outbox
        with pytest.raises(OutboxError) as caught:
            outbox.append(_items(1, start=1))
        assert caught.value.code == "outbox_error"
        assert outbox.pending() == 1
        (tmp_path / "o.sqlite3.spill").mkdir()  # the spill file cannot be written either
        outbox.max_events = 1
        with pytest.raises(OutboxError):
            outbox.append(_items(1, start=2))
        assert (outbox.pending(), outbox.spilled()) == (1, 0)
    finally:
        outbox.close()
