"""The service down for a minute, then back: everything recorded meanwhile arrives exactly
once.

A real ``indelible run`` is stopped (SIGTERM) for ``INDELIBLE_SDK_OUTAGE`` seconds (60 by
default) while two threads keep recording; halfway through, the application restarts (a clean
``close()`` that cannot deliver, then a new client on the same outbox). The service comes back
on the same data and port; ``flush()`` must deliver everything, each event once.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from indelible.sdk import Client
from tests.sdk.live import LiveServer

OUTAGE = float(os.environ.get("INDELIBLE_SDK_OUTAGE", "60"))


def _client(server: LiveServer, outbox: Path) -> Client:
    return Client(
        server.url,
        server.writer,
        outbox,
        default_actor={"id": "outage-test", "type": "service"},
        base_backoff=0.1,
        max_backoff=2.0,
        timeout=2.0,
    )


def _record_for(client: Client, seconds: float, worker: int, out: list[str]) -> None:
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        n += 1
        started = time.monotonic()
        out.append(client.record("sdk.outage", target={"type": "w", "id": str(worker)}))
        # the service being away never slows record(): it only commits locally
        assert time.monotonic() - started < 2.0
        time.sleep(0.02)


def _record_in_threads(client: Client, seconds: float) -> list[str]:
    found: list[list[str]] = [[], []]
    threads = [
        threading.Thread(target=_record_for, args=(client, seconds, i, found[i])) for i in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return found[0] + found[1]


@pytest.mark.slow
def test_a_minute_of_outage_then_everything_arrives_exactly_once(tmp_path: Path) -> None:
    server = LiveServer(tmp_path / "data")
    outbox = tmp_path / "app" / "outbox.sqlite3"
    recorded: list[str] = []
    try:
        client = _client(server, outbox)
        recorded += _record_in_threads(client, 1.0)
        assert client.flush(30)
        server.stop()
        recorded += _record_in_threads(client, OUTAGE / 2)
        assert client.last_error is not None  # it has been trying, and says why
        assert client.close(timeout=1.0) is False  # cannot deliver: kept in the outbox
        client = _client(server, outbox)  # the application restarts during the outage
        waiting = client.pending()
        assert waiting > 0
        recorded += _record_in_threads(client, OUTAGE / 2)
        assert client.pending() >= waiting
        server.start()  # back, on the same data and port
        assert client.flush(60), f"{client.pending()} events still pending"
        assert client.rejected() == []
        client.close()
        counts = server.counts("sdk.outage")
    finally:
        server.stop()
    assert len(recorded) == len(set(recorded)) > 100
    assert sorted(counts) == sorted(recorded)
    assert set(counts.values()) == {1}
