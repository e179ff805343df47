"""The evidence read API through HTTP: C2SP tlog-tiles, proofs, leaves, the well-known vkey.

Everything served is checked with our own verifiers against bytes recomputed from the
submitted events, never against what the server says of itself.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from indelible.core import merkle
from indelible.core.checkpoint import open_checkpoint
from indelible.core.note import parse_vkey
from indelible.core.tiles import TILE_WIDTH, entries_path, tile_path
from indelible.storage.base import EntryQuery
from tests.factories import billing_event
from tests.server.test_api import Service, assert_error_shape, running

pytestmark = pytest.mark.anyio

COUNT = 300  # one full level-0 tile and a partial one of 44


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def published(service: Service, size: int, timeout: float = 10.0) -> str:
    """The checkpoint note once the publisher has signed one covering ``size`` entries."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        row = service.store.latest_checkpoint(service.log_id)
        if row is not None and row.size >= size:
            return row.note
        assert asyncio.get_running_loop().time() < deadline, "no checkpoint was published"
        await asyncio.sleep(0.02)


async def fill(service: Service, count: int = COUNT) -> str:
    for start in range(0, count, 100):
        batch = [billing_event(n) for n in range(start, min(count, start + 100))]
        assert (await service.post(batch)).status_code == 201
    return await published(service, count)


@pytest.fixture
async def service(tmp_path: Path, anyio_backend: str) -> AsyncIterator[Service]:
    async with running(tmp_path) as started:
        await fill(started)
        yield started


def leaves(service: Service, count: int = COUNT) -> list[bytes]:
    return [row.leaf for row in service.store.iter_entries(service.log_id, 0, count)]


def verifier(service: Service) -> Any:
    return parse_vkey(service.runtime.log_info(service.log_id).vkey)


# ---- checkpoint and vkey


async def test_the_checkpoint_is_the_newest_signed_one_and_verifies_with_the_published_vkey(
    service: Service,
) -> None:
    vkey = await service.client.get("/.well-known/indelible/acme/vkey", headers={})
    assert vkey.status_code == 200 and vkey.headers["content-type"].startswith("text/plain")
    anonymous = httpx.AsyncClient(transport=service.client._transport, base_url="http://x")
    async with anonymous:
        public_vkey = await anonymous.get("/.well-known/indelible/acme/vkey")
        refused = await anonymous.get("/tlog/acme/checkpoint")
    assert public_vkey.text == vkey.text  # no API key needed for the public key
    assert_error_shape(refused, 401, "unauthenticated")  # the checkpoint needs one by default
    answer = await service.client.get("/tlog/acme/checkpoint")
    assert answer.status_code == 200 and answer.headers["cache-control"] == "no-cache"
    cp, _ = open_checkpoint(answer.text, parse_vkey(vkey.text.strip()), "example.com/acme")
    assert cp.size >= COUNT
    assert cp.root == merkle.subtree_root(
        [merkle.leaf_hash(leaf) for leaf in leaves(service, cp.size)]
    )
    # the same checkpoint under both names; the publisher may sign a newer one in between
    # (every read appends its audit event), so it is the one served before or the one after
    same = (await service.client.get("/v1/checkpoint")).text
    after = (await service.client.get("/tlog/acme/checkpoint")).text
    assert same in (answer.text, after)


async def test_another_tenants_tlog_and_an_unknown_tenant_are_refused(service: Service) -> None:
    created = await service.client.post("/v1/tenants", json={"name": "globex"})
    assert created.status_code == 201, created.text
    for tenant in ("globex", "nobody"):
        answer = await service.client.get(f"/tlog/{tenant}/checkpoint")
        assert_error_shape(answer, 403, "forbidden")
    assert (await service.client.get("/.well-known/indelible/nobody/vkey")).status_code == 404


# ---- tiles


async def test_full_and_partial_hash_tiles_hold_the_tree_and_full_ones_are_immutable(
    service: Service,
) -> None:
    hashes = [merkle.leaf_hash(leaf) for leaf in leaves(service)]
    full = await service.client.get(f"/tlog/acme/{tile_path(0, 0)}")
    assert full.status_code == 200
    assert full.headers["content-type"] == "application/octet-stream"
    assert full.content == b"".join(hashes[:TILE_WIDTH])
    assert "immutable" in full.headers["cache-control"]
    assert full.headers["cache-control"].startswith("private")  # a key was needed
    for width in (1, 44):
        partial = await service.client.get(f"/tlog/acme/{tile_path(0, 1, width)}")
        assert partial.status_code == 200
        assert partial.content == b"".join(hashes[TILE_WIDTH : TILE_WIDTH + width])
        assert "immutable" not in partial.headers["cache-control"]
    # Level 1 holds the root of the first full level-0 tile; no full tile exists yet.
    level1 = await service.client.get(f"/tlog/acme/{tile_path(1, 0, 1)}")
    assert level1.content == merkle.subtree_root(hashes[:TILE_WIDTH])
    for missing in (tile_path(0, 1), tile_path(0, 1, 45), tile_path(0, 2, 1), tile_path(1, 0)):
        assert_error_shape(await service.client.get(f"/tlog/acme/{missing}"), 404, "not_found")


@pytest.mark.parametrize(
    "path",
    ["tile/0/1", "tile/0/001.p/0", "tile/0/001.p/256", "tile/64/000", "tile/0/x000/001", "tile/x"],
)
async def test_a_malformed_tile_path_is_a_400(service: Service, path: str) -> None:
    assert_error_shape(await service.client.get(f"/tlog/acme/{path}"), 400)


async def test_entry_bundles_hold_the_exact_leaves_and_each_read_is_audited(
    service: Service,
) -> None:
    before = service.size
    answer = await service.client.get(f"/tlog/acme/{entries_path(0)}")
    assert answer.status_code == 200
    parsed, data = [], answer.content
    while data:
        length = int.from_bytes(data[:2], "big")
        parsed.append(data[2 : 2 + length])
        data = data[2 + length :]
    assert parsed == leaves(service, TILE_WIDTH)
    partial = await service.client.get(f"/tlog/acme/{entries_path(1, 44)}")
    assert partial.status_code == 200 and partial.content.startswith(
        len(leaves(service)[TILE_WIDTH]).to_bytes(2, "big")
    )
    reads = service.store.query_entries(
        service.log_id, EntryQuery(event_type="audit.read", after_seq=before - 1)
    )
    routes = [json.loads(row.leaf)["event"]["data"]["route"] for row in reads]
    assert routes.count("tlog/tile/entries") == 2


async def test_entry_bundles_need_a_reading_key_even_when_the_tlog_is_public(
    tmp_path: Path,
) -> None:
    async with running(tmp_path, public_tlog=True) as service:
        await fill(service, 10)
        transport = service.client._transport
        async with httpx.AsyncClient(transport=transport, base_url="http://x") as anonymous:
            checkpoint = await anonymous.get("/tlog/acme/checkpoint")
            tile = await anonymous.get(f"/tlog/acme/{tile_path(0, 0, 10)}")
            bundle = await anonymous.get(f"/tlog/acme/{entries_path(0, 10)}")
        assert checkpoint.status_code == 200 and tile.status_code == 200
        assert tile.headers["cache-control"].startswith("public")
        assert_error_shape(bundle, 401, "unauthenticated")
        _, writer = service.runtime.keys.create(service.log_id, "writer", "w", None)
        as_writer = {"Authorization": f"Bearer {writer}"}
        denied = await service.client.get(f"/tlog/acme/{entries_path(0, 10)}", headers=as_writer)
        assert_error_shape(denied, 403, "forbidden")


# ---- proofs and leaves


async def test_inclusion_proofs_verify_against_the_served_checkpoint(service: Service) -> None:
    note = (await service.client.get("/v1/checkpoint")).text
    cp, _ = open_checkpoint(note, verifier(service))
    all_leaves = leaves(service, cp.size)
    for seq in (0, 1, 255, 256, 299):
        answer = await service.client.get("/v1/proofs/inclusion", params={"seq": seq})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["tree_size"] == cp.size and bytes.fromhex(body["root"]) == cp.root
        proof = [bytes.fromhex(node) for node in body["proof"]]
        merkle.verify_inclusion(merkle.leaf_hash(all_leaves[seq]), seq, cp.size, proof, cp.root)
    sized = await service.client.get("/v1/proofs/inclusion", params={"seq": 3, "tree_size": 10})
    root10 = merkle.subtree_root([merkle.leaf_hash(leaf) for leaf in all_leaves[:10]])
    assert bytes.fromhex(sized.json()["root"]) == root10


async def test_consistency_proofs_verify_between_any_two_sizes(service: Service) -> None:
    hashes = [merkle.leaf_hash(leaf) for leaf in leaves(service)]
    for old, new in ((1, 2), (7, 256), (255, 300), (256, 257), (300, 300)):
        answer = await service.client.get("/v1/proofs/consistency", params={"old": old, "new": new})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        merkle.verify_consistency(
            old,
            new,
            merkle.subtree_root(hashes[:old]),
            merkle.subtree_root(hashes[:new]),
            [bytes.fromhex(node) for node in body["proof"]],
        )


@pytest.mark.parametrize(
    ("path", "params", "status"),
    [
        ("/v1/proofs/inclusion", {"seq": "300", "tree_size": "300"}, 400),
        ("/v1/proofs/inclusion", {"seq": "-1"}, 422),
        ("/v1/proofs/inclusion", {"seq": "1", "tree_size": "999999"}, 404),
        ("/v1/proofs/inclusion", {"seq": "1", "extra": "1"}, 400),
        ("/v1/proofs/consistency", {"old": "0", "new": "3"}, 422),
        ("/v1/proofs/consistency", {"old": "9", "new": "3"}, 400),
        ("/v1/proofs/consistency", {"old": "3", "new": "999999"}, 404),
        ("/v1/leaves/999999", {}, 404),
        ("/v1/leaves/x", {}, 422),
    ],
)
async def test_bad_proof_and_leaf_requests_get_their_4xx(
    service: Service, path: str, params: dict[str, str], status: int
) -> None:
    assert_error_shape(await service.client.get(path, params=params), status)


async def test_a_leaf_is_served_as_its_exact_bytes_and_the_read_is_audited(
    service: Service,
) -> None:
    before = service.size
    answer = await service.client.get("/v1/leaves/42")
    assert answer.status_code == 200 and answer.content == leaves(service)[42]
    assert base64.b64encode(merkle.leaf_hash(answer.content))  # the hash the proofs use
    (read,) = service.store.query_entries(
        service.log_id, EntryQuery(event_type="audit.read", after_seq=before - 1)
    )
    assert json.loads(read.leaf)["event"]["data"]["seq"] == 42


async def test_every_new_route_is_in_the_openapi_document(service: Service) -> None:
    paths = (await service.client.get("/openapi.json")).json()["paths"]
    for route in (
        "/tlog/{tenant}/checkpoint",
        "/tlog/{tenant}/tile/{path}",
        "/.well-known/indelible/{tenant}/vkey",
        "/v1/proofs/inclusion",
        "/v1/proofs/consistency",
        "/v1/leaves/{seq}",
        "/v1/anchors",
        "/v1/exports",
    ):
        assert route in paths
