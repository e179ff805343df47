"""The C2SP witness through its real HTTP app, fed by real Indelible logs; and the log's client.

Checkpoints come from real logs (SQLite store, sequencer, publisher) and their consistency
proofs from the store's tiles. The witness app runs in process (httpx ASGI transport); the
client (:func:`submit_checkpoint`, urllib) talks to a live ``indelible witness serve``
subprocess and to a stub HTTP server for the answers a correct witness never gives.
"""

from __future__ import annotations

import base64
import http.server
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from indelible import errors
from indelible.core.checkpoint import Checkpoint, sign_checkpoint
from indelible.core.cosignature import (
    cosign,
    cosigned_by,
    format_add_checkpoint,
    format_cosigner_vkey,
    parse_cosigner_vkey,
    verify_cosignature,
)
from indelible.core.event import validate_event
from indelible.core.note import generate_signer, parse_note
from indelible.server.witness_app import create_witness_app
from indelible.service.anchoring import parse_witnesses
from indelible.service.ingest import Publisher, Sequencer
from indelible.service.logs import OpenLog, init_log
from indelible.service.proofs import consistency_proof
from indelible.service.witness import (
    SIZE_MEDIA_TYPE,
    Witness,
    WitnessConflict,
    init_witness,
    open_witness,
    submit_checkpoint,
)
from indelible.storage.sqlite import SQLiteStore
from indelible.storage.witness_state import StaleSize, WitnessState
from tests.conftest import run_cli
from tests.factories import billing_event
from tests.net import free_port

pytestmark = pytest.mark.anyio

NOW_S = 1_800_000_000
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# ---------------------------------------------------------------------------------------------
# Real logs


@dataclass
class Log:
    """A real Indelible log whose checkpoints are submitted to witnesses."""

    store: SQLiteStore
    opened: OpenLog
    salt: int
    appended: int = 0
    notes: dict[int, str] = field(default_factory=dict)

    @property
    def origin(self) -> str:
        return self.opened.info.origin

    @property
    def vkey(self) -> str:
        return self.opened.info.vkey

    def grow(self, count: int) -> str:
        """Append ``count`` events, sign a checkpoint and return its note."""
        sequencer = Sequencer(
            self.store, self.opened.info, clock_ms=now_ms, random_bytes=os.urandom
        )
        try:
            events = [
                validate_event(billing_event(self.appended + i, salt=self.salt), now_ms=now_ms())
                for i in range(count)
            ]
            sequencer.append(events)
        finally:
            sequencer.close()
        self.appended += count
        assert self.opened.signer is not None
        row = Publisher(self.store, self.opened.info, self.opened.signer, clock_ms=now_ms).publish()
        assert row is not None
        self.notes[row.size] = row.note
        return row.note

    def proof(self, old: int, new: int) -> list[bytes]:
        if old == 0 or old == new:
            return []
        return consistency_proof(self.store, self.opened.info, old, new).proof

    def request(self, old: int, new: int) -> bytes:
        return format_add_checkpoint(old, self.proof(old, new), self.notes[new])

    def forged(self, size: int, other: Log) -> str:
        """A checkpoint of ``other``'s tree at ``size``, signed with this log's key."""
        assert self.opened.signer is not None
        root = parse_checkpoint_root(other.notes[size])
        return sign_checkpoint(Checkpoint(self.origin, size, root), self.opened.signer)


def parse_checkpoint_root(note: str) -> bytes:
    return base64.b64decode(parse_note(note).text.split("\n")[2])


def make_log(tmp_path: Path, name: str, salt: int = 0, origin: str = "example.com/acme") -> Log:
    store = SQLiteStore(tmp_path / name / "log.db")
    opened = init_log(
        store, tmp_path / name / "keys", "acme", origin, clock_ms=now_ms, random_bytes=os.urandom
    )
    return Log(store, opened, salt)


@pytest.fixture
def log(tmp_path: Path) -> Iterator[Log]:
    made = make_log(tmp_path, "log")
    yield made
    made.store.close()


@pytest.fixture
def fork(tmp_path: Path) -> Iterator[Log]:
    """Another tree (other events) whose checkpoints ``log``'s key will sign: a split view."""
    made = make_log(tmp_path, "fork", salt=1)
    yield made
    made.store.close()


# ---------------------------------------------------------------------------------------------
# Witnesses in process


@dataclass
class Peer:
    witness: Witness
    client: httpx.AsyncClient

    async def add(self, body: bytes) -> httpx.Response:
        return await self.client.post("/add-checkpoint", content=body)


def fixed_clock(time_s: int) -> Callable[[], int]:
    return lambda: time_s


@pytest.fixture
async def witnesses(tmp_path: Path, log: Log) -> AsyncIterator[list[Peer]]:
    """Three witnesses that trust ``log``, each behind its own app."""
    peers = []
    for n in (1, 2, 3):
        witness = init_witness(tmp_path / f"w{n}", f"witness.example/w{n}", os.urandom)
        witness.clock_s = fixed_clock(NOW_S + n)
        witness.add_log(log.vkey)
        transport = httpx.ASGITransport(app=create_witness_app(witness))
        peers.append(Peer(witness, httpx.AsyncClient(transport=transport, base_url="http://w")))
    yield peers
    for peer in peers:
        await peer.client.aclose()
        peer.witness.state.close()


@pytest.fixture
def peer(witnesses: list[Peer]) -> Peer:
    return witnesses[0]


def held(peer: Peer, log: Log) -> int | None:
    latest = peer.witness.state.latest(log.origin)
    return None if latest is None else latest.size


def assert_size_conflict(response: httpx.Response, size: int) -> None:
    assert response.status_code == 409, response.text
    assert response.headers["content-type"] == SIZE_MEDIA_TYPE
    assert response.text == f"{size}\n"


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["code"] == code


# ---------------------------------------------------------------------------------------------
# add-checkpoint, the spec's statuses


async def test_first_checkpoint_from_old_0_is_cosigned(peer: Peer, log: Log) -> None:
    note = log.grow(3)
    response = await peer.add(log.request(0, 3))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    [line] = response.text.splitlines(keepends=True)
    verifier = parse_cosigner_vkey(peer.witness.vkey)  # the vkey the witness publishes
    assert verify_cosignature(parse_note(note).text, line, verifier) == NOW_S + 1
    assert held(peer, log) == 3
    assert peer.witness.state.latest(log.origin).note == note  # type: ignore[union-attr]


async def test_a_later_checkpoint_needs_a_consistency_proof(peer: Peer, log: Log) -> None:
    log.grow(3)
    assert (await peer.add(log.request(0, 3))).status_code == 200
    log.grow(6)
    response = await peer.add(log.request(3, 9))
    assert response.status_code == 200, response.text
    assert held(peer, log) == 9
    # the same checkpoint again is cosigned again (fresh time), nothing moves
    again = await peer.add(log.request(9, 9))
    assert again.status_code == 200 and held(peer, log) == 9


async def test_split_view_same_size_other_root_is_refused(peer: Peer, log: Log, fork: Log) -> None:
    log.grow(4)
    fork.grow(4)
    assert (await peer.add(log.request(0, 4))).status_code == 200
    forked = format_add_checkpoint(4, [], log.forged(4, fork))
    response = await peer.add(forked)
    assert_error(response, 409, "split_view")
    details = response.json()["error"]["details"]
    assert details["expected"] == parse_checkpoint_root(log.notes[4]).hex()
    assert details["computed"] == parse_checkpoint_root(fork.notes[4]).hex()
    assert held(peer, log) == 4
    # the signed request is kept as evidence of the log's misbehaviour
    [refusal] = peer.witness.state.refusals(log.origin)
    assert refusal.body == forked


async def test_split_view_of_an_empty_tree_is_refused(peer: Peer, log: Log) -> None:
    assert log.opened.signer is not None
    other_root = parse_checkpoint_root(log.grow(1))
    empty_other = sign_checkpoint(Checkpoint(log.origin, 0, other_root), log.opened.signer)
    assert_error(await peer.add(format_add_checkpoint(0, [], empty_other)), 409, "split_view")
    assert held(peer, log) is None


async def test_a_fork_that_grew_is_refused_with_422(peer: Peer, log: Log, fork: Log) -> None:
    log.grow(4)
    fork.grow(4)
    fork.grow(3)
    assert (await peer.add(log.request(0, 4))).status_code == 200
    # a valid proof inside the fork's tree, from its own size-4 root, not the one cosigned
    body = format_add_checkpoint(4, fork.proof(4, 7), log.forged(7, fork))
    assert_error(await peer.add(body), 422, "invalid_proof")
    assert held(peer, log) == 4


async def test_rollback_is_refused(peer: Peer, log: Log) -> None:
    """The witness holds 9; the log's store was restored from a backup taken at size 3."""
    log.grow(3)
    log.grow(6)
    assert (await peer.add(log.request(0, 9))).status_code == 200
    # the restored log believes the witness is at 3 and submits 3 -> 3: the witness says 9,
    # which is larger than anything the restored log has: it learns it was rolled back
    assert_size_conflict(await peer.add(log.request(3, 3)), 9)
    # told "9", it cannot prove anything from 9 to 3: old > new is refused
    smaller = format_add_checkpoint(9, [], log.notes[3])
    assert_error(await peer.add(smaller), 400, "bad_format")
    assert held(peer, log) == 9
    # and the stored size can never shrink, whatever code writes the file
    state = peer.witness.state
    with pytest.raises(errors.StoreError, match="never shrinks"):
        state.advance(log.origin, 9, 3, b"\0" * 32, "x", old_root=_root(peer, log), now_s=0)
    with sqlite3.connect(state.path) as raw, pytest.raises(sqlite3.IntegrityError):
        raw.execute("UPDATE latest SET size = 3")
    with sqlite3.connect(state.path) as raw, pytest.raises(sqlite3.IntegrityError):
        raw.execute("DELETE FROM latest")
    assert held(peer, log) == 9


def _root(peer: Peer, log: Log) -> bytes | None:
    latest = peer.witness.state.latest(log.origin)
    return None if latest is None else latest.root


async def test_wrong_old_size_gets_409_with_the_witness_size(peer: Peer, log: Log) -> None:
    log.grow(2)
    log.grow(3)
    assert_size_conflict(await peer.add(log.request(2, 5)), 0)  # never cosigned: 0
    assert (await peer.add(log.request(0, 2))).status_code == 200
    log.grow(1)
    assert_size_conflict(await peer.add(format_add_checkpoint(0, [], log.notes[6])), 2)
    assert_size_conflict(await peer.add(log.request(5, 6)), 2)
    assert (await peer.add(log.request(2, 6))).status_code == 200


async def test_forged_log_signature_is_403(peer: Peer, log: Log) -> None:
    note = log.grow(2)
    impostor = generate_signer(log.origin, bytes(32))  # same name, another key
    text = parse_note(note).text
    forged = sign_checkpoint(Checkpoint(log.origin, 2, parse_checkpoint_root(note)), impostor)
    assert_error(await peer.add(format_add_checkpoint(0, [], forged)), 403, "untrusted_checkpoint")
    # the log's own key, one signature bit flipped
    sig = parse_note(note).signatures[0]
    raw = bytearray(sig.key_hash + sig.signature)
    raw[-1] ^= 0x01
    flipped = f"{text}\n\u2014 {sig.name} {base64.b64encode(bytes(raw)).decode()}\n"
    assert_error(await peer.add(format_add_checkpoint(0, [], flipped)), 403, "untrusted_checkpoint")
    assert held(peer, log) is None


async def test_unknown_origin_is_404(peer: Peer, tmp_path: Path) -> None:
    stranger = make_log(tmp_path, "stranger", origin="example.com/stranger")
    try:
        stranger.grow(1)
        assert_error(await peer.add(stranger.request(0, 1)), 404, "unknown_log")
    finally:
        stranger.store.close()


async def test_bad_consistency_proofs_are_422(peer: Peer, log: Log) -> None:
    log.grow(3)
    log.grow(5)
    assert (await peer.add(log.request(0, 3))).status_code == 200
    proof = log.proof(3, 8)
    for bad in (
        [bytes([proof[0][0] ^ 1]) + proof[0][1:], *proof[1:]],  # one bit flipped
        proof[:-1],  # truncated
        [*proof, proof[0]],  # too long
        [],  # empty
    ):
        body = format_add_checkpoint(3, bad, log.notes[8])
        assert_error(await peer.add(body), 422, "invalid_proof")
    one = log.proof(3, 8)[:1]
    assert_error(await peer.add(format_add_checkpoint(3, one, log.notes[3])), 422, "invalid_proof")
    assert held(peer, log) == 3
    assert len(peer.witness.state.refusals(log.origin)) == 5


async def test_old_size_0_takes_an_empty_proof(peer: Peer, log: Log) -> None:
    log.grow(3)
    proof = [b"\0" * 32]
    assert_error(
        await peer.add(format_add_checkpoint(0, proof, log.notes[3])), 422, "invalid_proof"
    )


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"old 0\n",
        b"old 00\n\nexample.com/acme\n",
        b"old 1\nnot base64!\n\n",
        b"\xff\xfe",
        "old 0\n\nexample.com/acme\n1\nAAAA\n\n\u2014 x AAAAAAAAAAA=\n".encode(),
    ],
)
async def test_malformed_bodies_are_400(peer: Peer, body: bytes) -> None:
    assert_error(await peer.add(body), 400, "bad_format")


async def test_a_well_formed_note_that_is_not_a_checkpoint_is_400(peer: Peer, log: Log) -> None:
    assert log.opened.signer is not None
    from indelible.core.note import sign_note

    note = sign_note("just a note\n", [log.opened.signer])
    assert_error(await peer.add(format_add_checkpoint(0, [], note)), 400, "bad_format")


async def test_limits_routes_and_methods(peer: Peer) -> None:
    big = b"old 0\n\n" + b"x" * (1 << 20)
    assert_error(await peer.add(big), 413, "limit_exceeded")
    assert_error(await peer.client.get("/add-checkpoint"), 405, "method_not_allowed")
    assert (await peer.client.get("/add-checkpoint")).headers["allow"] == "POST"
    assert_error(await peer.client.post("/checkpoint"), 404, "not_found")


async def test_an_unexpected_failure_is_a_json_500(peer: Peer, log: Log) -> None:
    log.grow(1)
    peer.witness.state.close()  # the database is gone from under the witness
    try:
        response = await peer.add(log.request(0, 1))
    finally:
        peer.witness.state = WitnessState(peer.witness.state.path)
    assert_error(response, 503, "store_error")  # nothing was acknowledged
    broken = Witness(peer.witness.state, peer.witness.signer, peer.witness.clock_s)
    broken.add_checkpoint = None  # type: ignore[assignment,method-assign]
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_witness_app(broken)), base_url="http://w"
    )
    async with client:
        assert_error(await client.post("/add-checkpoint", content=b"x"), 500, "internal_error")


# ---------------------------------------------------------------------------------------------
# Cosignatures and policy


async def test_cosignature_verifies_and_one_flipped_bit_fails(peer: Peer, log: Log) -> None:
    note = log.grow(2)
    line = (await peer.add(log.request(0, 2))).text
    verifier = parse_cosigner_vkey(peer.witness.vkey)
    body = parse_note(note).text
    assert verify_cosignature(body, line, verifier) == NOW_S + 1
    name, payload = line[2:-1].split(" ")
    for byte in (0, 5, 20, 75):
        raw = bytearray(base64.b64decode(payload))
        raw[byte] ^= 0x01
        flipped = f"\u2014 {name} {base64.b64encode(bytes(raw)).decode()}\n"
        with pytest.raises(errors.SignatureError):
            verify_cosignature(body, flipped, verifier)
    # the log's note with the cosignature appended is still one valid signed note
    assert len(parse_note(note + line).signatures) == 2


async def test_policy_2_of_3_counts_distinct_valid_witnesses(
    witnesses: list[Peer], log: Log
) -> None:
    note = log.grow(3)
    body = parse_note(note).text
    keys = tuple(parse_cosigner_vkey(p.witness.vkey) for p in witnesses)

    def satisfied(body: str, lines: list[str]) -> bool:  # 2 of 3, as a log's policy counts
        return len(cosigned_by(body, lines, keys)) >= 2

    first = (await witnesses[0].add(log.request(0, 3))).text
    assert not satisfied(body, [first])
    assert not satisfied(body, [first, first])  # one witness twice is one
    bad = cosign(body, witnesses[1].witness.signer, NOW_S)
    bad = bad[:-4] + ("A" if bad[-4] != "A" else "B") + bad[-3:]
    assert not satisfied(body, [first, bad])  # an invalid line does not count
    stranger = init_witness(
        Path(witnesses[0].witness.state.path).parent.parent / "x", "s", os.urandom
    )
    try:
        other = cosign(body, stranger.signer, NOW_S)
    finally:
        stranger.state.close()
    assert not satisfied(body, [first, other])  # an unknown witness does not count
    second = (await witnesses[2].add(log.request(0, 3))).text
    assert satisfied(body, [first, other, bad, second])
    assert set(cosigned_by(body, [first, second], keys)) == {
        parse_cosigner_vkey(witnesses[i].witness.vkey).key_id for i in (0, 2)
    }
    # the cosignature of another checkpoint does not count for this one
    log.grow(1)
    later = parse_note(log.notes[4]).text
    assert not satisfied(later, [first, second])


def test_a_witness_key_listed_twice_counts_once() -> None:
    a = parse_cosigner_vkey(_vkey("a", 1))
    twin = parse_cosigner_vkey(_vkey("twin", 1))  # the same key under another name
    config = ", ".join(f"https://{v.name}.example {format_cosigner_vkey(v)}" for v in (a, twin))
    with pytest.raises(errors.FormatError, match="twice"):
        parse_witnesses(config)


def _vkey(name: str, seed: int) -> str:
    from indelible.core.cosignature import generate_cosigner

    return format_cosigner_vkey(generate_cosigner(name, bytes([seed]) * 32).verifier())


# ---------------------------------------------------------------------------------------------
# State: durable, atomic


async def test_the_state_survives_a_restart(tmp_path: Path, peer: Peer, log: Log) -> None:
    log.grow(5)
    assert (await peer.add(log.request(0, 5))).status_code == 200
    directory, vkey = peer.witness.state.path.parent, peer.witness.vkey
    peer.witness.state.close()
    reopened = open_witness(directory, clock_s=lambda: NOW_S)
    peer.witness = reopened
    await peer.client.aclose()
    peer.client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_witness_app(reopened)), base_url="http://w"
    )
    assert reopened.vkey == vkey  # the same key
    assert held(peer, log) == 5
    assert reopened.state.log_keys(log.origin) == [log.vkey]
    assert_size_conflict(await peer.add(log.request(0, 5)), 5)
    log.grow(1)
    assert (await peer.add(log.request(5, 6))).status_code == 200


class StallingState(WitnessState):
    """Runs ``hook`` once between a request's checks and its compare-and-swap."""

    hook: Callable[[], None] | None = None

    def advance(self, *args: Any, **kwargs: Any) -> None:
        hook, self.hook = self.hook, None
        if hook is not None:
            hook()
        super().advance(*args, **kwargs)


async def test_the_specs_race_cannot_roll_back(tmp_path: Path, log: Log) -> None:
    """tlog-witness: A (size N) and B (size N+K) both checked, B stored first; A must fail."""
    signer = init_witness(tmp_path / "racer", "witness.example/racer", os.urandom).signer
    witness = Witness(StallingState(tmp_path / "racer" / "race.db"), signer, fixed_clock(NOW_S))
    witness.add_log(log.vkey)
    log.grow(3)
    log.grow(2)
    log.grow(4)
    witness.add_checkpoint(log.request(0, 3))
    b_lines: list[str] = []
    assert isinstance(witness.state, StallingState)
    witness.state.hook = lambda: b_lines.append(witness.add_checkpoint(log.request(3, 9)))
    transport = httpx.ASGITransport(app=create_witness_app(witness))
    async with httpx.AsyncClient(transport=transport, base_url="http://w") as client:
        a = await client.post("/add-checkpoint", content=log.request(3, 5))
    assert_size_conflict(a, 9)
    assert len(b_lines) == 1
    latest = witness.state.latest(log.origin)
    assert latest is not None and latest.size == 9
    witness.state.close()


def test_advance_is_a_compare_and_swap(tmp_path: Path) -> None:
    state = WitnessState(tmp_path / "w.db")
    try:
        r1, r2, r3 = (bytes([n]) * 32 for n in (1, 2, 3))
        state.advance("o", 0, 3, r1, "n3", old_root=None, now_s=1)
        with pytest.raises(StaleSize) as info:  # a second "first" checkpoint
            state.advance("o", 0, 4, r2, "n4", old_root=None, now_s=2)
        assert info.value.details() == {"size": 3}
        with pytest.raises(StaleSize):  # checked against another root
            state.advance("o", 3, 5, r3, "n5", old_root=r2, now_s=2)
        state.advance("o", 3, 5, r3, "n5", old_root=r1, now_s=2)
        latest = state.latest("o")
        assert latest is not None and (latest.size, latest.root, latest.note) == (5, r3, "n5")
        assert state.add_log("o", "k") and not state.add_log("o", "k")
        assert state.origins() == ["o"]
    finally:
        state.close()


def test_racing_requests_cannot_roll_back(tmp_path: Path) -> None:
    """tlog-witness's race: A (size N) and B (size N+K) both checked, B stored first."""
    state = WitnessState(tmp_path / "w.db")
    try:
        r0, ra, rb = (bytes([n]) * 32 for n in (0, 1, 2))
        state.advance("o", 0, 2, r0, "n2", old_root=None, now_s=1)
        barrier = threading.Barrier(2)
        results: list[str] = []

        def request(size: int, root: bytes) -> None:
            barrier.wait()
            try:
                state.advance("o", 2, size, root, f"n{size}", old_root=r0, now_s=2)
                results.append(f"ok {size}")
            except StaleSize as exc:
                results.append(f"stale {exc.size}")

        threads = [threading.Thread(target=request, args=a) for a in ((5, ra), (9, rb))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len([r for r in results if r.startswith("ok")]) == 1
        latest = state.latest("o")
        assert latest is not None and f"ok {latest.size}" in results
    finally:
        state.close()


def test_a_state_file_that_cannot_be_opened(tmp_path: Path) -> None:
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(errors.StoreError, match="cannot open"):
        WitnessState(tmp_path / "dir.db")


def test_init_and_open_refusals(tmp_path: Path) -> None:
    witness = init_witness(tmp_path / "w", "witness.example/w", os.urandom)
    witness.state.close()
    assert (tmp_path / "w" / "witness.skey").stat().st_mode & 0o777 == 0o600
    with pytest.raises(errors.AlreadyExists):
        init_witness(tmp_path / "w", "witness.example/w", os.urandom)
    with pytest.raises(errors.NotFound):
        open_witness(tmp_path / "nothing")
    witness = open_witness(tmp_path / "w")
    try:
        with pytest.raises(errors.FormatError):
            witness.add_log("not a vkey")
        vkey = generate_signer("example.com/log", bytes(32)).verifier()
        from indelible.core.note import format_vkey

        assert witness.add_log(format_vkey(vkey), "example.com/other") == "example.com/other"
        with pytest.raises(errors.FormatError):
            witness.add_log(format_vkey(vkey), "two\nlines")
        assert abs(witness.clock_s() - time.time()) < 5
    finally:
        witness.state.close()


# ---------------------------------------------------------------------------------------------
# The CLI and a live witness; the log's client


@pytest.fixture
def live(tmp_path: Path, log: Log) -> Iterator[str]:
    """``indelible witness init / add-log / serve`` in a subprocess; yields its URL."""
    data = tmp_path / "live"
    created = run_cli("witness", "init", "--data", str(data), "--name", "witness.example/live")
    assert created.code == 0, created.stderr
    assert "cosigner vkey (publish it): witness.example/live+" in created.stdout
    added = run_cli("witness", "add-log", "--data", str(data), "--vkey", log.vkey, "--json")
    assert added.code == 0, added.stderr
    assert '"origin": "example.com/acme"' in added.stdout
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "indelible.cli",
            "witness",
            "serve",
            "--data",
            str(data),
            "--port",
            str(port),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert process.poll() is None, process.communicate()
                assert time.monotonic() < deadline, "the witness did not start"
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        out, err = process.communicate(timeout=20)
        assert "cosigner vkey: witness.example/live+" in out, (out, err)


def test_the_log_client_against_a_live_witness(live: str, log: Log, tmp_path: Path) -> None:
    vkey = open_witness(tmp_path / "live").vkey
    verifier = parse_cosigner_vkey(vkey)
    log.grow(3)
    lines = submit_checkpoint(live + "/", 0, [], log.notes[3], timeout=10)
    body = parse_note(log.notes[3]).text
    assert [verify_cosignature(body, line, verifier) > 0 for line in lines] == [True]
    log.grow(4)
    # a log that lost track of the witness: 409 names the size to prove from
    with pytest.raises(WitnessConflict) as info:
        submit_checkpoint(live, 0, [], log.notes[7], timeout=10)
    assert info.value.details() == {"size": 3, "url": live + "/add-checkpoint"}
    lines = submit_checkpoint(live, 3, log.proof(3, 7), log.notes[7], timeout=10)
    assert verify_cosignature(parse_note(log.notes[7]).text, lines[0], verifier)
    # other refusals are upstream errors carrying the witness's status
    with pytest.raises(errors.UpstreamError) as refused:
        submit_checkpoint(live, 7, log.proof(3, 7)[:1], log.notes[7], timeout=10)
    assert refused.value.upstream_status == 422


def test_client_refuses_what_a_correct_witness_never_answers(tmp_path: Path, log: Log) -> None:
    note = log.grow(1)
    answers: list[tuple[int, dict[str, str], bytes]] = []

    class Stub(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            status, headers, body = answers.pop(0)
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    size = {"Content-Type": SIZE_MEDIA_TYPE}
    cases: list[tuple[int, dict[str, str], bytes, str]] = [
        (200, {}, b"", "without signature lines"),
        (200, {}, b"\xff\xfe", "without signature lines"),
        (200, {}, b"- not a line\n", "without signature lines"),
        (200, {}, "\u2014 w AAAA".encode(), "without signature lines"),
        (200, {}, b"x" * ((1 << 20) + 1), "more than 1 MiB"),
        (409, size, b"007\n", "HTTP 409"),
        (409, size, b"7", "HTTP 409"),
        (409, {"Content-Type": "application/json"}, b'{"error": {}}', "HTTP 409"),
        (302, {"Location": url + "/elsewhere"}, b"", "HTTP 302"),
        (500, {}, b"boom", "HTTP 500 boom"),
    ]
    try:
        for status, headers, body, match in cases:
            answers.append((status, headers, body))
            with pytest.raises(errors.UpstreamError, match=match):
                submit_checkpoint(url, 0, [], note, timeout=5)
        answers.append((409, {"Content-Type": "text/x.tlog.size; charset=utf-8"}, b"0\n"))
        with pytest.raises(WitnessConflict) as info:
            submit_checkpoint(url, 5, [], note, timeout=5)
        assert info.value.size == 0
        line = "\u2014 w AAAA\n\u2014 v BBBB\n".encode()
        answers.append((200, {}, line))
        assert submit_checkpoint(url, 0, [], note, timeout=5) == [
            "\u2014 w AAAA\n",
            "\u2014 v BBBB\n",
        ]
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(errors.UpstreamError, match="unreachable") as down:
        submit_checkpoint(url, 0, [], note, timeout=2)
    assert down.value.upstream_status is None
    with pytest.raises(errors.FormatError, match="http"):
        submit_checkpoint("file:///etc/passwd", 0, [], note, timeout=2)
