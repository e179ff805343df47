"""Indelible wrapped as a benchmark subject, measured exactly like the peers.

Ingest includes everything a real append does: strict validation of each event, canonical
encoding, sealing (commitments for personal values), the hash chain, tile updates and the
fsync'd group commit. Verify is the full ``indelible verify`` (every step, every core).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import orjson

from bench.peers import Event
from indelible.core import merkle
from indelible.core.event import validate_batch
from indelible.service.ingest import Publisher, Sequencer
from indelible.service.logs import OpenLog, init_log
from indelible.service.proofs import TileCache, inclusion_proof
from indelible.service.verify import verify_log
from indelible.storage import open_store

__all__ = ["IndelibleIngestSubject", "IndelibleProofSubject"]


def _now() -> int:
    return time.time_ns() // 1_000_000


def _open(directory: Path, store_url: str | None = None) -> tuple[OpenLog, Sequencer]:
    store = open_store(store_url or f"sqlite:///{directory / 'indelible.db'}")
    opened = init_log(
        store,
        directory / "keys",
        "bench",
        "bench.example/indelible",
        clock_ms=_now,
        random_bytes=os.urandom,
    )
    sequencer = Sequencer(store, opened.info, clock_ms=_now, random_bytes=os.urandom)
    return opened, sequencer


class IndelibleIngestSubject:
    """SQLite store, WAL + synchronous=FULL: one fsync'd transaction per group commit.

    ``store_url``, when given, is called on each open for the URL of a fresh store
    (bench/pg_bench.py: a new PostgreSQL database each time)."""

    name = "Indelible"

    def __init__(
        self,
        verify_workers: int | None = None,
        store_url: Callable[[], str] | None = None,
    ) -> None:
        self._workers = verify_workers or os.cpu_count() or 1
        self._opened: OpenLog | None = None
        self._sequencer: Sequencer | None = None
        self._store_url = store_url

    def open(self, directory: Path) -> None:
        url = self._store_url() if self._store_url is not None else None
        self._opened, self._sequencer = _open(directory, url)

    def append(self, events: Sequence[Event]) -> None:
        assert self._sequencer is not None
        self._sequencer.append(validate_batch(list(events), now_ms=_now()))

    def checkpoint(self) -> None:
        assert self._opened is not None and self._opened.signer is not None
        opened = self._opened
        assert opened.signer is not None
        Publisher(opened.store, opened.info, opened.signer, clock_ms=_now).publish()

    def verify_all(self) -> int:
        assert self._opened is not None
        report = verify_log(
            self._opened.store, self._opened.info, self._opened.verifier, workers=self._workers
        )
        return report.size

    def close(self) -> None:
        if self._sequencer is not None:
            self._sequencer.close()
        if self._opened is not None:
            self._opened.store.close()
        self._opened = self._sequencer = None


class IndelibleProofSubject:
    """Proofs served from the SQLite store's tiles, as `indelible proof inclusion` does."""

    name = "Indelible"

    def __init__(self) -> None:
        self._opened: OpenLog | None = None
        self._size = 0
        self._cache = TileCache()  # what a serving process keeps

    def build(self, directory: Path, payloads: Iterable[bytes]) -> int:
        opened, sequencer = _open(directory)
        self._opened = opened
        batch: list[object] = []
        try:
            for payload in payloads:
                batch.append(orjson.loads(payload))
                if len(batch) == 10_000:
                    sequencer.append(validate_batch(batch, now_ms=_now()))
                    batch = []
            if batch:
                sequencer.append(validate_batch(batch, now_ms=_now()))
        finally:
            sequencer.close()
        assert opened.signer is not None
        Publisher(opened.store, opened.info, opened.signer, clock_ms=_now).publish()
        self._size = opened.store.tree_size(opened.info.log_id)
        return self._size

    def prove(self, index: int) -> object:
        assert self._opened is not None
        return inclusion_proof(
            self._opened.store, self._opened.info, index, self._size, cache=self._cache
        )

    def verify(self, index: int, proof: object) -> None:
        from indelible.service.proofs import InclusionProof

        assert isinstance(proof, InclusionProof)
        merkle.verify_inclusion(proof.leaf_hash, index, proof.tree_size, proof.proof, proof.root)

    def close(self) -> None:
        if self._opened is not None:
            self._opened.store.close()
            self._opened = None
