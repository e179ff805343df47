"""Anchoring against real parties: `openssl ts` authorities and C2SP witnesses over HTTP.

The log submits its checkpoints; the tests check what it kept with the parties' own keys and
roots, that the witness policy decides what is final, and that a store rolled back to an old
backup, or forked, is refused by the witnesses that hold a newer checkpoint.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn

from indelible.core.checkpoint import open_checkpoint
from indelible.core.cosignature import parse_cosigner_vkey, verify_cosignature
from indelible.core.event import validate_event
from indelible.core.note import Signer, parse_note
from indelible.errors import FormatError
from indelible.server.witness_app import create_witness_app
from indelible.service.anchoring import (
    RFC3161,
    AnchorConfig,
    Anchorer,
    WitnessConfig,
    final_checkpoint,
    parse_witnesses,
)
from indelible.service.ingest import Publisher, Sequencer
from indelible.service.logs import OpenLog, init_log, open_log
from indelible.service.timestamping import verify_timestamp
from indelible.service.witness import Witness, init_witness
from indelible.storage.sqlite import SQLiteStore
from tests.factories import billing_event
from tests.net import free_port
from tests.tsa import TSA, Mode, closed_port_url


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class LiveWitness:
    """A witness served over real HTTP by uvicorn, in a thread."""

    def __init__(self, directory: Path, name: str) -> None:
        self.witness: Witness = init_witness(directory, name, os.urandom)
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(
            create_witness_app(self.witness), host="127.0.0.1", port=port, log_level="warning"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            assert time.monotonic() < deadline, "the witness did not start"
            time.sleep(0.01)

    def config(self) -> WitnessConfig:
        return WitnessConfig(self.url, parse_cosigner_vkey(self.witness.vkey))

    def stop(self) -> None:
        """Stop serving (idempotent); the state file stays."""
        if self._server.should_exit:
            return
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self.witness.state.close()


@pytest.fixture
def witnesses(tmp_path: Path) -> Iterator[list[LiveWitness]]:
    running = [LiveWitness(tmp_path / f"w{n}", f"witness.example/w{n}") for n in range(3)]
    yield running
    for witness in running:
        witness.stop()


@dataclass
class Log:
    path: Path
    store: SQLiteStore
    opened: OpenLog

    @property
    def signer(self) -> Signer:
        assert self.opened.signer is not None
        return self.opened.signer

    def grow(self, start: int, count: int) -> int:
        """Append events and sign a checkpoint; return the new size."""
        sequencer = Sequencer(
            self.store, self.opened.info, clock_ms=now_ms, random_bytes=os.urandom
        )
        events = [billing_event(n) for n in range(start, start + count)]
        sequencer.append([validate_event(e, now_ms=now_ms()) for e in events])
        sequencer.close()
        row = Publisher(self.store, self.opened.info, self.signer, clock_ms=now_ms).publish()
        assert row is not None
        return row.size

    def anchorer(self, config: AnchorConfig, **options: object) -> Anchorer:
        return Anchorer(self.store, self.opened.info, config, now_ms, **options)  # type: ignore[arg-type]

    def reopen(self) -> None:
        self.store.close()
        self.store = SQLiteStore(self.path / "log.db")
        self.opened = open_log(self.store, self.path / "keys", "acme", need_signer=True)


@pytest.fixture
def log(tmp_path: Path) -> Iterator[Log]:
    path = tmp_path / "log"
    path.mkdir()
    store = SQLiteStore(path / "log.db")
    opened = init_log(
        store, path / "keys", "acme", "example.com/acme", clock_ms=now_ms, random_bytes=os.urandom
    )
    made = Log(path, store, opened)
    yield made
    made.store.close()


def trust(log: Log, witnesses: list[LiveWitness]) -> None:
    for witness in witnesses:
        witness.witness.add_log(log.opened.info.vkey)


# ---- RFC 3161


def test_the_newest_checkpoint_is_stamped_and_the_token_verifies_over_its_note(
    log: Log, tsa: TSA
) -> None:
    size = log.grow(0, 10)
    config = AnchorConfig(tsa_urls=(tsa.url,), tsa_roots=(tsa.ca_der,), tsa_interval=600)
    anchorer = log.anchorer(config)
    anchorer.run_once()
    (row,) = log.store.list_anchors(log.opened.info.log_id, kind=RFC3161)
    note = log.store.get_checkpoint(log.opened.info.log_id, size).note
    assert row.size == size and row.authority == tsa.url
    info = verify_timestamp(row.evidence, note.encode(), [tsa.ca_der])
    assert abs(info.gen_time_ms - now_ms()) < 120_000
    assert anchorer.errors == {}


def test_at_most_one_timestamp_per_interval(log: Log, tsa: TSA) -> None:
    clock = [1_000.0]
    config = AnchorConfig(tsa_urls=(tsa.url,), tsa_roots=(tsa.ca_der,), tsa_interval=600)
    anchorer = log.anchorer(config, monotonic=lambda: clock[0])
    first = log.grow(0, 5)
    anchorer.run_once()
    second = log.grow(5, 5)
    clock[0] += 599
    anchorer.run_once()  # the tree grew, but the interval has not passed
    stamped = [row.size for row in log.store.list_anchors(log.opened.info.log_id, kind=RFC3161)]
    assert stamped == [first]
    clock[0] += 2
    anchorer.run_once()
    stamped = [row.size for row in log.store.list_anchors(log.opened.info.log_id, kind=RFC3161)]
    assert stamped == [first, second]
    # A restart remembers when it last asked, from the stored token's time.
    log.grow(10, 5)
    restarted = log.anchorer(config, monotonic=lambda: clock[0])
    restarted.run_once()
    assert len(log.store.list_anchors(log.opened.info.log_id, kind=RFC3161)) == 2


@pytest.mark.parametrize("url_of", ["down", "error", "foreign root"])
def test_a_failing_or_untrusted_authority_stores_nothing_and_says_why(
    log: Log, tsa: TSA, foreign_tsa: TSA, url_of: str, caplog: pytest.LogCaptureFixture
) -> None:
    log.grow(0, 3)
    url, roots = {
        "down": (closed_port_url(), (tsa.ca_der,)),
        "error": (tsa.url_for(Mode.HTTP_500), (tsa.ca_der,)),
        "foreign root": (tsa.url, (foreign_tsa.ca_der,)),
    }[url_of]
    anchorer = log.anchorer(AnchorConfig(tsa_urls=(url,), tsa_roots=roots))
    with caplog.at_level(logging.WARNING, "indelible.anchoring"):
        anchorer.run_once()
    assert log.store.list_anchors(log.opened.info.log_id) == []
    reason = anchorer.errors[url]
    expected = {"down": "upstream_error", "error": "500", "foreign root": "trusted root"}
    assert expected[url_of] in reason and reason in caplog.text


# ---- witnesses


def test_every_witness_cosigns_and_each_cosignature_verifies_with_its_key(
    log: Log, witnesses: list[LiveWitness]
) -> None:
    trust(log, witnesses)
    config = AnchorConfig(witnesses=tuple(w.config() for w in witnesses), quorum=2)
    anchorer = log.anchorer(config)
    for start in (0, 10, 300):  # from size 0, then with consistency proofs
        size = log.grow(start, 10 if start < 300 else 280)
        anchorer.run_once()
        assert anchorer.errors == {}
        final = final_checkpoint(log.store, log.opened.info.log_id, config)
        assert final is not None and final.row.size == size and len(final.cosignatures) == 3
        body = parse_note(final.row.note).text
        for witness, line in zip(witnesses, final.cosignatures, strict=True):
            verify_cosignature(body, line, parse_cosigner_vkey(witness.witness.vkey))
        # The published note verifies with the log's key alone; the cosignatures ride along.
        cp, _ = open_checkpoint(final.note, log.signer.verifier(), "example.com/acme")
        assert cp.size == size
        assert {w.witness.state.latest("example.com/acme").size for w in witnesses} == {size}


def test_the_quorum_decides_which_checkpoint_is_final(
    log: Log, witnesses: list[LiveWitness]
) -> None:
    trust(log, witnesses)
    config = AnchorConfig(witnesses=tuple(w.config() for w in witnesses), quorum=2)
    anchorer = log.anchorer(config)
    first = log.grow(0, 10)
    anchorer.run_once()
    witnesses[2].stop()  # one of three down: 2 of 3 still cosign
    second = log.grow(10, 10)
    anchorer.run_once()
    final = final_checkpoint(log.store, log.opened.info.log_id, config)
    assert final is not None and final.row.size == second and len(final.cosignatures) == 2
    assert "upstream_error" in anchorer.errors[witnesses[2].url]
    witnesses[1].stop()  # two down: the newest checkpoint cannot become final
    log.grow(20, 10)
    anchorer.run_once()
    final = final_checkpoint(log.store, log.opened.info.log_id, config, previous=final)
    assert final is not None and final.row.size == second
    everyone = AnchorConfig(witnesses=config.witnesses)  # quorum 0: all three
    held = final_checkpoint(log.store, log.opened.info.log_id, everyone)
    assert held is not None and held.row.size == first


def test_a_store_restored_from_an_old_backup_is_refused_by_the_witnesses(
    log: Log, witnesses: list[LiveWitness], caplog: pytest.LogCaptureFixture
) -> None:
    trust(log, witnesses)
    config = AnchorConfig(witnesses=tuple(w.config() for w in witnesses[:1]))
    log.grow(0, 10)
    log.anchorer(config).run_once()
    log.store.close()
    shutil.copy(log.path / "log.db", log.path / "backup.db")  # the operator's backup, size 10
    log.reopen()
    held = log.grow(10, 20)
    log.anchorer(config).run_once()  # the witness now holds size 30
    log.store.close()
    shutil.copy(log.path / "backup.db", log.path / "log.db")  # restored: size 10 again
    for extra in ("-wal", "-shm"):
        (log.path / f"log.db{extra}").unlink(missing_ok=True)
    log.reopen()
    assert log.store.tree_size(log.opened.info.log_id) == 10
    anchorer = log.anchorer(config)
    log.grow(400, 5)  # new events after the restore: size 15
    with caplog.at_level(logging.ERROR, "indelible.anchoring"):
        anchorer.run_once()  # proves from 10, as its restored anchors say; answered 409: 30
    assert "rolled back or forked" in caplog.text and "size 30" in caplog.text
    # The restored log grows past 30 with other events: a fork, refused by the proof.
    log.grow(500, 25)
    anchorer.run_once()
    assert "invalid_proof" in anchorer.errors[witnesses[0].url] or "422" in str(
        anchorer.errors[witnesses[0].url]
    )
    assert witnesses[0].witness.state.latest("example.com/acme").size == held
    # Nothing after the rollback became final.
    final = final_checkpoint(log.store, log.opened.info.log_id, config)
    assert final is not None and final.row.size == 10


def test_witnesses_are_read_from_the_setting_and_checked(witnesses: list[LiveWitness]) -> None:
    pairs = ", ".join(f"{w.url}/ {w.witness.vkey}" for w in witnesses)
    parsed = parse_witnesses(pairs)
    assert [(w.url, w.key_id) for w in parsed] == [(w.url, w.config().key_id) for w in witnesses]
    assert parse_witnesses("") == ()
    for bad, reason in (
        ("not-a-url key", "URL VKEY"),
        (f"{witnesses[0].url}", "URL VKEY"),
        (f"{pairs}, {witnesses[0].url} {witnesses[0].witness.vkey}", "listed twice"),
    ):
        with pytest.raises(FormatError, match=reason):
            parse_witnesses(bad)
    with pytest.raises(FormatError, match="quorum of 2"):
        AnchorConfig(quorum=2)
    with pytest.raises(FormatError, match="tsa_ca"):
        AnchorConfig(tsa_urls=("https://tsa.example/",))
