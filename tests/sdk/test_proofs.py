"""Proof helpers against a real ``indelible run``: a receipt verified against the pinned
checkpoint, the pin kept in the outbox and advanced only with a consistency proof; forged
checkpoints, a wrong key and a wrong leaf hash raise the verification error family."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from indelible import errors
from indelible.core.checkpoint import Checkpoint, sign_checkpoint
from indelible.core.note import format_vkey, generate_signer, parse_skey
from indelible.sdk import AsyncClient, Client, NotYetPublished
from tests.sdk.live import LiveServer

ACTOR = {"id": "billing-app", "type": "service"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path_factory.mktemp("proofs") / "data", checkpoint_interval=0.1)
    try:
        yield live
    finally:
        live.stop()


def _client(server: LiveServer, outbox: Path, receipts: list[dict[str, Any]], **kw: Any) -> Client:
    kw.setdefault("vkey", server.vkey)
    return Client(
        server.url,
        server.writer,
        outbox,
        default_actor=ACTOR,
        poll=0.2,
        on_receipts=receipts.extend,
        **kw,
    )


def _verified(client: Client, receipt: dict[str, Any]) -> Checkpoint:
    deadline = time.monotonic() + 10
    while True:
        try:
            return client.proofs.verify_receipt(receipt)
        except NotYetPublished:
            assert time.monotonic() < deadline, "no checkpoint covered the event"
            time.sleep(0.1)


def test_receipts_verify_and_the_pin_advances_consistently(
    server: LiveServer, tmp_path: Path
) -> None:
    receipts: list[dict[str, Any]] = []
    outbox = tmp_path / "o.sqlite3"
    client = _client(server, outbox, receipts)
    try:
        client.record("invoice.sent")
        assert client.flush(30)
        first = _verified(client, receipts[0])
        assert first.size > receipts[0]["seq"]
        for n in range(5):
            client.record("invoice.sent", data={"n": n})
        assert client.flush(30)
    finally:
        client.close()
    client = _client(server, outbox, receipts)  # the pin is kept in the outbox file
    try:
        pinned = client.proofs.pinned()
        assert pinned is not None and pinned.size == first.size
        later = _verified(client, receipts[-1])  # refreshes: consistency from the old pin
        assert later.size > first.size
        assert client.proofs.pinned() == later
        assert client.proofs.verify_receipt(receipts[0]) == later  # old receipts still verify
        wrong = {**receipts[0], "leaf_hash": receipts[1]["leaf_hash"]}
        with pytest.raises(errors.ProofError):
            client.proofs.verify_receipt(wrong)
    finally:
        client.close()


def test_a_forged_pin_or_a_wrong_key_is_caught(server: LiveServer, tmp_path: Path) -> None:
    receipts: list[dict[str, Any]] = []
    client = _client(server, tmp_path / "o.sqlite3", receipts)
    try:
        client.record("invoice.sent")
        assert client.flush(30)
        real = _verified(client, receipts[0])
        # The log's own key signs a different history of the same size (a rewrite):
        signer = parse_skey((server.data / "keys" / "default.skey").read_text().strip())
        forged = Checkpoint(real.origin, real.size, bytes(32))
        client.proofs.pin(sign_checkpoint(forged, signer))
        with pytest.raises(errors.InconsistentTree):
            client.proofs.refresh()
        smaller = Checkpoint(real.origin, real.size - 1, bytes(32))
        client.proofs.pin(sign_checkpoint(smaller, signer))
        with pytest.raises(errors.InconsistentTree):
            client.proofs.refresh()
        bigger = Checkpoint(real.origin, real.size + 10_000, bytes(32))
        client.proofs.pin(sign_checkpoint(bigger, signer))
        with pytest.raises(errors.InconsistentTree):
            client.proofs.refresh()  # the service's log is smaller than what was pinned
    finally:
        client.close()
    stranger = generate_signer(real.origin, bytes(range(32)))
    other = _client(server, tmp_path / "p.sqlite3", [], vkey=format_vkey(stranger.verifier()))
    try:
        with pytest.raises(errors.SignatureError):
            other.proofs.refresh()
        with pytest.raises(errors.SignatureError):
            other.proofs.pin(sign_checkpoint(real, signer))  # the log's key is not the pinned one
        other.proofs.pin(sign_checkpoint(real, stranger))  # the pinned key's own note is fine
    finally:
        other.close()


def test_proofs_need_a_key(tmp_path: Path) -> None:
    client = Client(None, outbox=tmp_path / "o.sqlite3")
    try:
        with pytest.raises(ValueError):
            client.proofs.refresh()
    finally:
        client.close()


def test_async_client_checks_proofs_off_the_event_loop(server: LiveServer, tmp_path: Path) -> None:
    receipts: list[dict[str, Any]] = []

    async def main() -> Checkpoint:
        async with AsyncClient(
            server.url,
            server.writer,
            tmp_path / "a.sqlite3",
            default_actor=ACTOR,
            vkey=server.vkey,
            on_receipts=receipts.extend,
        ) as client:
            await client.record("invoice.sent")
            assert await client.flush(30)
            deadline = time.monotonic() + 10
            while True:
                try:
                    checkpoint = await client.proofs.verify_receipt(receipts[0])
                    break
                except NotYetPublished:
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.1)
            assert await client.proofs.pinned() == checkpoint
            assert (await client.proofs.refresh()).size >= checkpoint.size
            return checkpoint

    assert asyncio.run(main()).size > receipts[0]["seq"]
