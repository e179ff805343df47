"""Verification across worker processes gives the same answers as in one process."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import pytest

from indelible.core.event import validate_event
from indelible.errors import LeafError
from indelible.service import verify as verify_module
from indelible.service.ingest import Publisher, Sequencer
from indelible.service.logs import OpenLog, init_log
from indelible.service.verify import verify_log
from indelible.storage import open_store
from tests.factories import billing_event


def now() -> int:
    return time.time_ns() // 1_000_000


@pytest.fixture
def opened(tmp_path: Path) -> OpenLog:
    store = open_store(f"sqlite:///{tmp_path / 'v.db'}")
    log = init_log(
        store, tmp_path / "keys", "acme", "example.com/acme", clock_ms=now, random_bytes=os.urandom
    )
    sequencer = Sequencer(store, log.info, clock_ms=now, random_bytes=os.urandom)
    sequencer.append(
        [validate_event(billing_event(n, personal=n % 4 == 0), now_ms=now()) for n in range(1500)]
    )
    sequencer.close()
    assert log.signer is not None
    Publisher(store, log.info, log.signer, clock_ms=now).publish()
    return log


def test_parallel_verification_covers_every_range(
    opened: OpenLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(verify_module, "_PARALLEL_FROM", 0)
    monkeypatch.setattr(verify_module, "_CHUNK", 256)
    seen: list[int] = []
    report = verify_log(
        opened.store, opened.info, opened.verifier, workers=2, progress=lambda d, t: seen.append(d)
    )
    assert report.size == 1500 and report.checkpoints_checked == 1
    assert seen[-1] == 1500 and len(seen) == 6
    opened.store.close()


def test_parallel_verification_names_the_bad_seq(
    opened: OpenLog, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(verify_module, "_PARALLEL_FROM", 0)
    monkeypatch.setattr(verify_module, "_CHUNK", 256)
    conn = sqlite3.connect(tmp_path / "v.db", isolation_level=None)
    conn.execute("DROP TRIGGER entries_no_update")
    conn.execute("UPDATE entries SET actor_id = 'mallory' WHERE seq = 1111")
    conn.close()
    with pytest.raises(LeafError) as caught:
        verify_log(opened.store, opened.info, opened.verifier, workers=2)
    assert caught.value.seq == 1111
    opened.store.close()
