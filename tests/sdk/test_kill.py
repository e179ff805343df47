"""The outbox survives kill -9 of the application: every event_id that ``record()`` returned
for reaches the service exactly once.

An application (tests/sdk/kill_app.py) records from four threads, printing each event_id
right after ``record()`` returns, while its sender delivers to a real ``indelible run``; it is
SIGKILLed at random moments and started again on the same outbox, ``INDELIBLE_SDK_KILLS``
times (20 by default, 200 under ``make soak``). A last start drains the outbox; then the
service's log must hold every printed event_id exactly once. The same loop against a build
that prints before its commit must lose printed events, which proves this test can fail.
A third run uses an outbox of 20 events that spills the rest to its spill file.
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
from typing import Any

import pytest

from tests.lines import read_lines
from tests.sdk.live import ROOT, LiveServer

KILLS = int(os.environ.get("INDELIBLE_SDK_KILLS", "20"))


def _app(
    server: LiveServer,
    outbox: Path,
    run: str,
    *extra: str,
    broken: bool = False,
    spill: bool = False,
) -> Any:
    env = dict(
        os.environ,
        INDELIBLE_SDK_TEST_BROKEN="1" if broken else "0",
        INDELIBLE_SDK_TEST_SPILL="1" if spill else "0",
    )
    args = [sys.executable, "-m", "tests.sdk.kill_app", str(outbox), server.url, server.writer]
    return subprocess.Popen(
        [*args, run, *extra],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _run_and_kill(
    server: LiveServer, outbox: Path, run: int, rng: random.Random, broken: bool, spill: bool
) -> list[str]:
    proc = _app(server, outbox, f"run-{run}", broken=broken, spill=spill)
    printed: list[str] = []
    ready = threading.Event()
    reader = threading.Thread(target=read_lines, args=(proc.stdout, printed, ready), daemon=True)
    reader.start()
    if not ready.wait(30):
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"the application did not start: {err}")
    time.sleep(rng.uniform(0.05, 0.5))
    if proc.poll() is not None:  # it must still be recording when the kill comes
        _, err = proc.communicate()
        raise AssertionError(f"the application exited on its own ({proc.returncode}): {err}")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    reader.join()
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    proc.stderr.close()
    return printed


def _drain(server: LiveServer, outbox: Path) -> None:
    proc = _app(server, outbox, "drain", "--drain")
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0 and out.strip() == "drained", (out, err)


def kill_loop(
    tmp: Path, *, kills: int, broken: bool, seed: int, spill: bool = False
) -> tuple[list[str], int, int]:
    """(printed ids missing from the log, printed count, entries that are duplicates)."""
    server = LiveServer(tmp / "data")
    try:
        outbox = tmp / "app" / "outbox.sqlite3"
        rng = random.Random(seed)
        printed: list[str] = []
        for run in range(kills):
            printed += _run_and_kill(server, outbox, run, rng, broken, spill)
        spilled = outbox.with_name(outbox.name + ".spill").exists()
        _drain(server, outbox)
        counts = server.counts("sdk.kill")
    finally:
        server.stop()
    assert spilled or not spill, "nothing was left in the spill file: spilling went untested"
    missing = [event_id for event_id in printed if counts[event_id] == 0]
    duplicates = sum(n - 1 for n in counts.values())
    return missing, len(printed), duplicates


@pytest.mark.slow
def test_kill_9_of_the_application_loses_no_recorded_event(tmp_path: Path) -> None:
    missing, printed, duplicates = kill_loop(tmp_path, kills=KILLS, broken=False, seed=6)
    assert printed > 5 * KILLS, "the application barely recorded anything: this proves little"
    assert missing == []
    assert duplicates == 0


@pytest.mark.slow
def test_kill_9_while_spilling_loses_no_recorded_event(tmp_path: Path) -> None:
    """The same with an outbox of 20 events: the spill file is appended to, drained back and
    rewritten while the kills come."""
    kills = max(KILLS // 2, 5)
    missing, printed, duplicates = kill_loop(
        tmp_path, kills=kills, broken=False, seed=8, spill=True
    )
    assert printed > 5 * kills
    assert missing == []
    assert duplicates == 0


@pytest.mark.slow
def test_an_application_that_acks_before_the_commit_is_caught(tmp_path: Path) -> None:
    missing, printed, _ = kill_loop(tmp_path, kills=8, broken=True, seed=7)
    assert printed > 0
    assert missing, "printing before the commit lost nothing: the kill test cannot tell"
