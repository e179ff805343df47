"""The relay under failure: killed with SIGKILL mid-stream, the log down for a while, rows the
log refuses, two relays at once. Checked through Indelible's HTTP API."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

import tests.server.test_live as live
from tests.conftest import run_cli
from tests.service.conftest import App, Log, relaying, start_log, wait_drained

KILLS = int(os.environ.get("INDELIBLE_CAPTURE_KILLS", "5"))
COUNTERS = "CREATE TABLE counters (id int PRIMARY KEY, n int NOT NULL, note text)"


def install(app: App, target_type: str) -> None:
    done = run_cli(
        "pg-capture", "install", "--dsn", app.owner_url, "--table", "counters",
        "--target-type", target_type, "--relay-role", app.relay_role,
    )  # fmt: skip
    assert done.code == 0, done.stdout + done.stderr


class Writer(threading.Thread):
    """The application: inserts and updates counters until stopped, remembering every change
    it committed as (id, n after the change)."""

    def __init__(self, app: App, start: int = 0, pace: float = 0.01) -> None:
        super().__init__(name="application writer", daemon=True)
        self.conn = app.app()
        self.next_id, self.pace, self.stop = start, pace, threading.Event()
        self.expected: list[tuple[int, int]] = []
        self.values: dict[int, int] = {}
        self.failure: BaseException | None = None
        self.rng = random.Random(7)

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                self.write()
                time.sleep(self.pace)
        except BaseException as exc:
            self.failure = exc
        finally:
            self.conn.close()

    def write(self) -> None:
        with self.conn.transaction():
            if self.rng.random() < 0.5:
                self.conn.execute("SET LOCAL indelible.actor_id = 'u-1'")
            if not self.values or self.rng.random() < 0.6:
                ids = list(range(self.next_id, self.next_id + self.rng.randint(1, 20)))
                self.conn.execute(
                    "INSERT INTO counters (id, n) SELECT g, 0 FROM unnest(%s::int[]) g", (ids,)
                )
                self.next_id += len(ids)
                changed = dict.fromkeys(ids, 0)
            else:
                ids = self.rng.sample(sorted(self.values), min(len(self.values), 30))
                self.conn.execute("UPDATE counters SET n = n + 1 WHERE id = ANY(%s)", (ids,))
                changed = {i: self.values[i] + 1 for i in ids}
        self.values.update(changed)
        self.expected += changed.items()

    def finish(self) -> list[tuple[int, int]]:
        self.stop.set()
        self.join(10)
        assert self.failure is None, self.failure
        return self.expected


def recorded(log: Log, target_type: str) -> Counter[tuple[int, int]]:
    events = log.events(target_type=target_type)
    assert len({e["event_id"] for e in events}) == len(events), "an event_id appears twice"
    outbox = {(e["data"]["outbox"]["statement"], e["data"]["outbox"]["row"]) for e in events}
    assert len(outbox) == len(events), "an outbox row was recorded twice"
    return Counter(
        (int(e["target"]["id"]), next(c["after"] for c in e["changes"] if c["field"] == "n"))
        for e in events
    )


def relay_process(app: App, log: Log, stderr: Path) -> subprocess.Popen[str]:
    command = [
        sys.executable, "-m", "indelible.cli", "pg-capture", "relay", "--dsn", app.relay_url,
        "--url", log.base, "--token", log.writer, "--batch", "10", "--poll", "0.2",
        "--max-backoff", "0.5",
    ]  # fmt: skip
    with stderr.open("a") as sink:
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=sink, text=True)


def working(stderr: Path, starts: int, timeout: float = 20) -> None:
    """Wait until the relay started for the ``starts``-th time holds the lock and works."""
    deadline = time.monotonic() + timeout
    while stderr.read_text().count("relaying database") < starts:
        assert time.monotonic() < deadline, stderr.read_text()[-2000:]
        time.sleep(0.02)


@pytest.mark.slow
def test_a_relay_killed_mid_stream_again_and_again_loses_and_duplicates_nothing(
    app_db: App, capture_log: Log, tmp_path: Path
) -> None:
    app_db.create(COUNTERS, "counters")
    install(app_db, "killed_counter")
    writer = Writer(app_db)
    writer.start()
    stderr, rng, pending_at_kill = tmp_path / "relay.log", random.Random(11), []
    for started in range(1, KILLS + 1):
        relay = relay_process(app_db, capture_log, stderr)
        working(stderr, started)
        time.sleep(rng.uniform(0.02, 0.4))
        pending_at_kill.append(app_db.status()["captures"][0]["pending"])
        relay.send_signal(signal.SIGKILL)
        relay.communicate(timeout=10)
        assert relay.returncode == -signal.SIGKILL
    expected = writer.finish()
    assert any(pending_at_kill), "every kill found the outbox empty: nothing was mid-stream"
    last = relay_process(app_db, capture_log, stderr)
    try:
        wait_drained(app_db, timeout=60)
    finally:
        last.send_signal(signal.SIGTERM)
        stdout, _ = last.communicate(timeout=20)
    assert last.returncode == 0, stderr.read_text()[-2000:]
    assert "relay stopped:" in stdout
    found = recorded(capture_log, "killed_counter")
    assert found == Counter(expected) and set(found.values()) == {1}
    assert len(expected) > 100


def test_while_the_log_is_down_nothing_is_lost_and_then_all_arrives_once(
    app_db: App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app_db.create(COUNTERS, "counters")
    install(app_db, "outage_counter")
    log = start_log(tmp_path / "data")
    writer = Writer(app_db)
    with relaying(app_db.relay_url, log, max_backoff=0.3) as running:
        for _ in range(5):
            writer.write()
        wait_drained(app_db)
        log.server.stop()  # the log goes down; the application keeps writing
        for _ in range(10):
            writer.write()
        time.sleep(1.5)
        state = app_db.status()["captures"][0]
        assert state["pending"] > 0 and state["rejected"] == 0
        assert running.relay.stats.retries > 0
        port = log.server.port
        monkeypatch.setattr(live, "free_port", lambda: port)
        log.server = live.Server(tmp_path / "data")  # back, on the same address
        try:
            wait_drained(app_db)
        finally:
            writer.conn.close()
    try:
        found = recorded(log, "outage_counter")
    finally:
        log.server.stop()
    assert found == Counter(writer.expected) and set(found.values()) == {1}


def test_a_refused_row_is_kept_as_rejected_and_does_not_block_the_others(
    app_db: App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INDELIBLE_MAX_BODY_BYTES", "20000")  # the log's limit, not ours
    log = start_log(tmp_path / "data")
    app_db.create(COUNTERS, "counters")
    install(app_db, "refused_counter")
    with app_db.app() as conn:
        conn.execute("INSERT INTO counters VALUES (1, 0)")
        conn.execute("INSERT INTO counters VALUES (2, 0, %s)", ("x" * 30_000,))  # 413
        with conn.transaction():
            conn.execute("SET LOCAL indelible.actor_id = 'u-1'")
            conn.execute("SET LOCAL indelible.ip = 'not an address'")  # invalid event
            conn.execute("INSERT INTO counters VALUES (3, 0)")
        with conn.transaction():
            conn.execute("SET LOCAL indelible.actor_id = 'u-1'")
            conn.execute("SET LOCAL indelible.actor_type = 'wizard'")  # invalid event
            conn.execute("INSERT INTO counters VALUES (4, 0)")
        conn.execute("INSERT INTO counters VALUES (5, 0)")
        conn.execute("INSERT INTO counters VALUES (6, 0)")
    with app_db.owner() as conn:  # as if the database's clock ran an hour ahead of the log's
        conn.execute(
            "UPDATE indelible_capture.statements SET at = now() + interval '1 hour'"
            " WHERE id = (SELECT stmt FROM indelible_capture.changes_1_1 WHERE a1 = 5)"
        )
    try:
        with relaying(app_db.relay_url, log):
            state = wait_drained(app_db, rejected=4)
            with app_db.app() as conn:  # later rows still flow
                conn.execute("INSERT INTO counters VALUES (7, 0)")
            wait_drained(app_db, rejected=4)
            errors = {
                row["error"] for row in state["captures"][0]["rejected_rows"]
            }  # kept, with why
            done = run_cli("pg-capture", "requeue", "--dsn", app_db.owner_url, "--json")
            assert done.code == 0 and '"requeued": 4' in done.stdout
            again = wait_drained(app_db, rejected=4)  # refused again, never lost, never sent twice
        ids = sorted(int(e["target"]["id"]) for e in log.events(target_type="refused_counter"))
    finally:
        log.server.stop()
    assert ids == [1, 6, 7]
    assert len(errors) == 4
    assert [e for e in errors if "413 limit_exceeded" in e]
    assert [e for e in errors if "/context/ip" in e and e.startswith("not a valid event")]
    assert [e for e in errors if "/actor/type" in e]
    assert [e for e in errors if "422 invalid_event" in e and "future_timestamp" in e]
    kinds = {error.split(":")[0] for error in errors}  # the 422's text names the clock skew
    assert {row["error"].split(":")[0] for row in again["captures"][0]["rejected_rows"]} == kinds


def test_a_second_relay_waits_for_the_first_and_takes_over(app_db: App, capture_log: Log) -> None:
    app_db.create(COUNTERS, "counters")
    install(app_db, "handover_counter")
    writer = Writer(app_db)
    with (
        relaying(app_db.relay_url, capture_log) as first,
        relaying(app_db.relay_url, capture_log) as second,
    ):
        writer.write()
        wait_drained(app_db)
        assert (first.relay.stats.relayed, second.relay.stats.relayed) != (0, 0)
        waiting = second if second.relay.stats.relayed == 0 else first
        working = first if waiting is second else second
        working.relay.stop()
        working.thread.join(10)
        writer.write()
        wait_drained(app_db)
        assert waiting.relay.stats.relayed > 0
    writer.conn.close()
    assert recorded(capture_log, "handover_counter") == Counter(writer.expected)


def test_the_relay_says_at_once_what_stops_it_from_starting(app_db: App, capture_log: Log) -> None:
    base = ("pg-capture", "relay", "--url", capture_log.base, "--token", capture_log.writer)
    not_installed = run_cli(*base, "--dsn", app_db.relay_url, "--json")
    assert not_installed.code == 2 and "not installed" in not_installed.stdout
    bad = run_cli(*base, "--dsn", app_db.relay_url, "--batch", "5000", "--json")
    assert bad.code == 2 and "--batch must be 1 to 1000" in bad.stdout
    url = run_cli("pg-capture", "relay", "--url", "ftp://x", "--token", "t", "--dsn", "x=y")
    assert url.code == 2 and "--url must be" in url.stderr


def test_rows_sent_again_after_their_delete_failed_are_recorded_once(
    app_db: App, capture_log: Log
) -> None:
    """Acknowledged but not deleted (here: the delete is refused) means sent again: the same
    event_ids, so Indelible answers with the original receipts and records nothing twice."""
    app_db.create(COUNTERS, "counters")
    install(app_db, "replayed_counter")
    writer = Writer(app_db)
    for _ in range(3):
        writer.write()
    with app_db.owner() as conn:
        conn.execute(f"REVOKE DELETE ON indelible_capture.changes_1_1 FROM {app_db.relay_role}")
    with relaying(app_db.relay_url, capture_log, max_backoff=0.2) as running:
        deadline = time.monotonic() + 20
        while running.relay.stats.requests < 3:  # posted, acknowledged, not deleted: again
            assert time.monotonic() < deadline, "the relay did not send the rows again"
            time.sleep(0.05)
        assert app_db.status()["captures"][0]["pending"] == len(writer.expected)
        with app_db.owner() as conn:
            conn.execute(f"GRANT DELETE ON indelible_capture.changes_1_1 TO {app_db.relay_role}")
        wait_drained(app_db)
    writer.conn.close()
    found = recorded(capture_log, "replayed_counter")
    assert found == Counter(writer.expected) and set(found.values()) == {1}
