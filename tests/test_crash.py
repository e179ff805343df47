"""Crash suite: SIGKILL the writer at random moments; nothing acknowledged may be lost.

The same loop run against a deliberately broken writer that acknowledges before its commit
must lose acknowledged events, which proves this test can fail. Both run on SQLite and on
PostgreSQL (the real server, the writer connecting as the service role).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from indelible.config import load_settings
from indelible.core.note import parse_vkey
from indelible.service.logs import open_log
from indelible.service.verify import verify_log
from indelible.storage import open_store
from tests import pg
from tests.conftest import run_cli
from tests.lines import read_lines

ROOT = Path(__file__).resolve().parent.parent
KILLS = int(os.environ.get("INDELIBLE_CRASH_KILLS", "50"))


def _run_once(
    data: Path, store: str | None, run: int, broken: bool, rng: random.Random
) -> list[str]:
    args = [sys.executable, "-m", "tests.crash_writer", str(data), str(run)]
    if broken:
        args.append("--ack-before-commit")
    env = dict(os.environ, **({"INDELIBLE_STORE": store} if store else {}))
    proc = subprocess.Popen(
        args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    acked: list[str] = []
    ready = threading.Event()
    reader = threading.Thread(target=read_lines, args=(proc.stdout, acked, ready), daemon=True)
    reader.start()
    if not ready.wait(30):
        proc.kill()
        proc.wait()
        reader.join()
        detail = proc.stderr.read() if proc.stderr else ""
        raise AssertionError(f"writer did not start: {detail}")
    time.sleep(rng.uniform(0.02, 0.4))
    if proc.poll() is not None:  # it must still be writing when the kill comes
        reader.join()
        detail = proc.stderr.read() if proc.stderr else ""
        raise AssertionError(f"writer exited on its own ({proc.returncode}): {detail}")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    reader.join()
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    proc.stderr.close()
    return acked


def _missing(data: Path, store_url: str | None, acked: list[str]) -> list[str]:
    """The acknowledged ids the store does not hold (looked up, not a scan of the log)."""
    settings = load_settings({"data": str(data), "store": store_url})
    store = open_store(settings.store_url, create=False)
    try:
        stored = store.find_event_ids(store.get_log("default").log_id, acked)
        return [event_id for event_id in acked if event_id not in stored]
    finally:
        store.close()


def crash_loop(
    data: Path, store: str | None, *, kills: int, broken: bool, seed: int
) -> tuple[list[str], int]:
    """Kill the writer `kills` times; return the acknowledged ids that are missing."""
    where = ["--store", store] if store else []
    assert run_cli("init", "--data", str(data), *where, "--origin", "example.com/crash").code == 0
    rng = random.Random(seed)
    lost: list[str] = []
    acked_total = 0
    for run in range(kills):
        acked = _run_once(data, store, run, broken, rng)
        acked_total += len(acked)
        lost += _missing(data, store, acked)
        if broken and lost:
            break
    return lost, acked_total


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest) -> str | None:
    """None for the embedded SQLite default; else the service role's PostgreSQL URL."""
    if request.param == "sqlite":
        return None
    db: pg.Database = request.getfixturevalue("pg_database")
    open_store(db.owner_url, service_role=db.service).close()
    return db.service_url


@pytest.mark.slow
def test_sigkill_never_loses_an_acknowledged_event(tmp_path: Path, store_url: str | None) -> None:
    data = tmp_path / "data"
    lost, acked = crash_loop(data, store_url, kills=KILLS, broken=False, seed=2)
    assert acked > 100 * KILLS // 10, "the writer barely wrote anything: the test proves little"
    assert lost == []
    settings = load_settings({"data": str(data), "store": store_url})
    store = open_store(settings.store_url, create=False)
    try:
        opened = open_log(store, settings.keys_dir, "default")
        # a full verify: seqs contiguous, chain, tiles and every checkpoint intact
        report = verify_log(store, opened.info, parse_vkey(opened.info.vkey))
        assert report.size >= acked  # every acknowledged id is one distinct entry
    finally:
        store.close()


@pytest.mark.slow
def test_a_writer_that_acks_before_commit_is_caught(tmp_path: Path, store_url: str | None) -> None:
    # stops at the first loss; observed after 13-30 kills on SQLite, so allow plenty
    lost, _ = crash_loop(
        tmp_path / "data", store_url, kills=max(4 * KILLS, 200), broken=True, seed=3
    )
    assert lost, "acking before commit lost nothing: the crash test cannot tell a broken writer"
