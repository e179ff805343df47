"""Anchoring: evidence about each log's checkpoints, held outside the store.

Two kinds of anchor, both stored append-only beside the checkpoint they are about
(:class:`~indelible.storage.base.AnchorRow`):

- **RFC 3161 timestamps.** At most every ``tsa_interval`` seconds, the newest checkpoint not
  yet stamped is sent to each configured time-stamping authority; the message imprint is the
  SHA-256 of the exact signed checkpoint note. The DER TimeStampResp is verified against the
  configured roots before it is kept.
- **Witness cosignatures** (C2SP tlog-witness / tlog-cosignature). Every new checkpoint is
  submitted to each configured witness with a consistency proof from the size that witness
  last cosigned; each returned cosignature is verified with the witness's key before it is
  kept. A witness that answers 409 names the size it holds: the next request proves from that
  size, and a size larger than the log's own newest checkpoint is reported loudly — it means
  the store was rolled back or forked.

The **final** checkpoint of a log is the newest one cosigned by at least ``quorum`` of the
configured witnesses (with no witnesses configured: the newest signed checkpoint). That is the
one the HTTP service publishes, with the cosignature lines appended to the signed note.

Anchoring never blocks ingest: failures are logged and kept in :attr:`Anchorer.errors`, and
the next round tries again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from indelible.core import merkle
from indelible.core.cosignature import CosignatureVerifier, parse_cosigner_vkey, verify_cosignature
from indelible.core.note import parse_note
from indelible.core.tiles import TileNodes
from indelible.errors import FormatError, IndelibleError, UpstreamError
from indelible.storage.base import AnchorRow, CheckpointRow, LogInfo, Store

__all__ = [
    "COSIGNATURE",
    "RFC3161",
    "AnchorConfig",
    "Anchorer",
    "FinalCheckpoint",
    "WitnessConfig",
    "final_checkpoint",
    "parse_witnesses",
]

log = logging.getLogger("indelible.anchoring")

RFC3161 = "rfc3161"
COSIGNATURE = "cosignature"


@dataclass(frozen=True)
class WitnessConfig:
    """A witness the log submits to: its add-checkpoint prefix URL and its cosigner vkey."""

    url: str
    verifier: CosignatureVerifier

    @property
    def key_id(self) -> str:
        return self.verifier.key_id


def parse_witnesses(text: str) -> tuple[WitnessConfig, ...]:
    """``URL VKEY[, URL VKEY ...]`` (the ``witnesses`` setting) → witness configs."""
    out: list[WitnessConfig] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        pieces = item.split()
        if len(pieces) != 2 or not pieces[0].startswith(("http://", "https://")):
            raise FormatError(f"a witness is 'URL VKEY', not {item!r}")
        out.append(WitnessConfig(pieces[0].rstrip("/"), parse_cosigner_vkey(pieces[1])))
    if len({w.verifier.public_key for w in out}) != len(out):
        raise FormatError("a witness key is listed twice (under one name or two)")
    return tuple(out)


@dataclass(frozen=True)
class AnchorConfig:
    """Where a log's checkpoints are anchored. ``quorum`` 0 means every configured witness."""

    tsa_urls: tuple[str, ...] = ()
    tsa_roots: tuple[bytes, ...] = ()  # DER certificates the tokens must chain to
    tsa_interval: float = 600.0  # seconds between timestamp requests, at most one per interval
    witnesses: tuple[WitnessConfig, ...] = ()
    quorum: int = 0
    timeout: float = 10.0  # per request to a TSA or witness

    def __post_init__(self) -> None:
        if not 0 <= self.quorum <= len(self.witnesses):
            raise FormatError(
                f"a quorum of {self.quorum} needs at least that many witnesses, "
                f"not {len(self.witnesses)}"
            )
        if self.tsa_urls and not self.tsa_roots:
            raise FormatError("timestamping needs the roots its tokens must chain to (tsa_ca)")

    @property
    def needed(self) -> int:
        """How many distinct witnesses must cosign a checkpoint before it is final."""
        return self.quorum or len(self.witnesses)

    @property
    def enabled(self) -> bool:
        return bool(self.tsa_urls or self.witnesses)


@dataclass(frozen=True)
class FinalCheckpoint:
    """A checkpoint that met the witness policy, and the cosignature lines that met it."""

    row: CheckpointRow
    cosignatures: tuple[str, ...]

    @property
    def note(self) -> str:
        """The signed note with the cosignatures appended (one signed note, many signers)."""
        return self.row.note + "".join(self.cosignatures)


def _cosignatures(store: Store, log_id: int, size: int, trusted: set[str]) -> tuple[str, ...]:
    rows = store.list_anchors(log_id, size=size, kind=COSIGNATURE)
    return tuple(row.evidence.decode() for row in rows if row.authority in trusted)


def final_checkpoint(
    store: Store, log_id: int, config: AnchorConfig, previous: FinalCheckpoint | None = None
) -> FinalCheckpoint | None:
    """The newest checkpoint cosigned by ``config.needed`` of the configured witnesses.

    Candidates are each witness's newest cosigned size (every round submits the same newest
    checkpoint to all of them, so they agree unless one lags); when none of those meets the
    quorum, ``previous`` (the last answer, which only moves forward) stands, and only without
    one are all stored cosignatures scanned.
    """
    trusted = {w.key_id for w in config.witnesses}
    latest = store.latest_checkpoint(log_id)
    if latest is None:
        return None
    if config.needed == 0:
        return FinalCheckpoint(latest, _cosignatures(store, log_id, latest.size, trusted))
    newest = (store.latest_anchor(log_id, COSIGNATURE, key) for key in trusted)
    candidates = sorted({row.size for row in newest if row is not None}, reverse=True)
    for size in candidates:
        if previous is not None and size <= previous.row.size:
            break
        cosigned = _cosignatures(store, log_id, size, trusted)
        if len(cosigned) >= config.needed:
            return FinalCheckpoint(store.get_checkpoint(log_id, size), cosigned)
    if previous is not None:
        return previous
    return _scan_for_final(store, log_id, config, trusted)


def _scan_for_final(
    store: Store, log_id: int, config: AnchorConfig, trusted: set[str]
) -> FinalCheckpoint | None:
    by_size: dict[int, set[str]] = {}
    for row in store.list_anchors(log_id, kind=COSIGNATURE):
        if row.authority in trusted:
            by_size.setdefault(row.size, set()).add(row.authority)
    for size in sorted(by_size, reverse=True):
        if len(by_size[size]) >= config.needed:
            cosigned = _cosignatures(store, log_id, size, trusted)
            return FinalCheckpoint(store.get_checkpoint(log_id, size), cosigned)
    return None


@dataclass
class _WitnessState:
    size: int | None = None  # the size the witness holds, as far as the log knows
    error: str | None = None


@dataclass
class _TsaState:
    last_request: float | None = None  # monotonic seconds
    error: str | None = None


@dataclass
class Anchorer:
    """Anchors one log's checkpoints; :meth:`run_once` is one round, :meth:`start` loops."""

    store: Store
    log: LogInfo
    config: AnchorConfig
    clock_ms: Callable[[], int]
    interval: float = 1.0
    monotonic: Callable[[], float] = time.monotonic
    _witnesses: dict[str, _WitnessState] = field(default_factory=dict)
    _tsas: dict[str, _TsaState] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def errors(self) -> dict[str, str]:
        """The last failure of each TSA or witness (by URL) that has not succeeded since."""
        out = {url: s.error for url, s in self._witnesses.items() if s.error}
        out.update({url: s.error for url, s in self._tsas.items() if s.error})
        return out

    def run_once(self) -> None:
        """Submit the newest checkpoint to every witness, and stamp it when a TSA is due."""
        with self._lock:
            latest = self.store.latest_checkpoint(self.log.log_id)
            if latest is None:
                return
            for config in self.config.witnesses:
                self._cosign(config, latest)
            for url in self.config.tsa_urls:
                self._timestamp(url, latest)

    # ---- witnesses
    def _cosign(self, config: WitnessConfig, latest: CheckpointRow) -> None:
        from indelible.service.witness import WitnessConflict

        state = self._witnesses.setdefault(config.url, _WitnessState())
        if state.size is None:
            held = self.store.latest_anchor(self.log.log_id, COSIGNATURE, config.key_id)
            state.size = 0 if held is None else held.size
        if state.size >= latest.size:
            if state.size > latest.size:
                self._rollback_alarm(config, state.size, latest.size)
            return
        try:
            self._submit(config, state, latest)
            state.error = None
        except WitnessConflict as conflict:
            state.size = conflict.size
            state.error = f"the witness holds size {conflict.size}; retrying from there"
            if conflict.size > latest.size:
                self._rollback_alarm(config, conflict.size, latest.size)
        except IndelibleError as exc:
            state.error = f"[{exc.code}] {exc.message}"
            log.warning("log %s: witness %s: %s", self.log.name, config.url, state.error)

    def _submit(self, config: WitnessConfig, state: _WitnessState, latest: CheckpointRow) -> None:
        from indelible.service import witness

        old = state.size or 0
        proof = self._consistency(old, latest.size)
        lines = witness.submit_checkpoint(
            config.url, old, proof, latest.note, timeout=self.config.timeout
        )
        line = self._verified_line(config, latest, lines)
        self.store.add_anchor(
            self.log.log_id,
            AnchorRow(latest.size, COSIGNATURE, config.key_id, line.encode(), self.clock_ms()),
        )
        state.size = latest.size

    def _consistency(self, old: int, new: int) -> list[bytes]:
        if old == 0:
            return []
        log_id = self.log.log_id
        nodes = TileNodes(lambda level, index: self.store.get_tile(log_id, level, index), new)
        return merkle.consistency_proof(old, new, nodes.get_node)

    def _verified_line(self, config: WitnessConfig, latest: CheckpointRow, lines: list[str]) -> str:
        body = parse_note(latest.note).text
        for line in lines:
            try:
                verify_cosignature(body, line, config.verifier)
            except IndelibleError:
                continue
            return line
        raise UpstreamError(
            f"the witness returned no valid cosignature by {config.key_id}", url=config.url
        )

    def _rollback_alarm(self, config: WitnessConfig, held: int, ours: int) -> None:
        log.error(
            "log %s: witness %s holds a checkpoint of size %d but the newest here is %d: "
            "this store was rolled back or forked",
            self.log.name,
            config.url,
            held,
            ours,
        )

    # ---- timestamping
    def _timestamp(self, url: str, latest: CheckpointRow) -> None:
        state = self._tsas.setdefault(url, _TsaState())
        held = self.store.latest_anchor(self.log.log_id, RFC3161, url)
        if held is not None and held.size >= latest.size:
            return
        now = self.monotonic()
        if state.last_request is None and held is not None:
            waited = (self.clock_ms() - held.created_at_ms) / 1000
            state.last_request = now - max(0.0, waited)
        if state.last_request is not None and now - state.last_request < self.config.tsa_interval:
            return
        state.last_request = now
        try:
            self._stamp(url, latest)
            state.error = None
        except IndelibleError as exc:
            state.error = f"[{exc.code}] {exc.message}"
            log.warning("log %s: time-stamping authority %s: %s", self.log.name, url, state.error)

    def _stamp(self, url: str, latest: CheckpointRow) -> None:
        from indelible.service import timestamping

        message = latest.note.encode()
        token = timestamping.request_timestamp(url, message, timeout=self.config.timeout)
        timestamping.verify_timestamp(token, message, self.config.tsa_roots)
        self.store.add_anchor(
            self.log.log_id, AnchorRow(latest.size, RFC3161, url, token, self.clock_ms())
        )

    # ---- the background loop
    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"indelible-anchorer-{self.log.name}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.run_once()
            except IndelibleError as exc:  # a store failure: try again next round
                log.error("log %s: anchoring failed: [%s] %s", self.log.name, exc.code, exc.message)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
