"""Independent agreement: our Merkle roots and proofs against RFC 6962 code we did not write.

Each oracle below is a third-party PyPI package, pinned exactly in the dev extra, that hashes
the raw leaves itself (``SHA-256(0x00 || data)``, nodes ``SHA-256(0x01 || left || right)``).
Nothing of Indelible's -- hashing, tree shape, proof order -- is shared with them: a hash or
order mistake of ours would have to be made identically by code written elsewhere to pass.

* ``pymerkle`` 7.0.0 (generator and verifier). Public API only: ``InmemoryTree(algorithm=
  "sha256")`` (RFC 6962 prefixes are its default, ``security=True``), ``append_entries``,
  ``get_leaf``, ``get_root(size)``, ``prove_inclusion(index, size)``,
  ``prove_consistency(m, n)``, ``InclusionProof(...)`` and ``InclusionProof.verify``,
  ``verify_consistency``, ``InvalidProof``. Its indices count from 1. Its inclusion proof's
  ``path`` is ``[leaf hash] + audit path`` with a ``rule`` of left/right bits fixed by
  ``(index, size)``; to have pymerkle check *our* path we build a public ``InclusionProof``
  from our hashes and the ``rule`` of pymerkle's own proof for the same ``(index, size)``.
  Its consistency proofs are *not* RFC 9162 ``PROOF(m, D[n])``: where the old size equals
  the split point ``k`` it descends right (RFC: left, "if m <= k") and ends on a single new
  leaf, so the hashes and their order differ (e.g. ``m = n`` gives ``[root]``, not ``[]``).
  They are a valid proof system of its own, so pymerkle checks only that its consistency
  proofs lead to *our* two roots; byte equality of consistency proofs is tamperlog's job.
* ``tamperlog`` 0.1.0 (generator and verifier). Public API only: ``hash_leaf``,
  ``merkle_root``, ``inclusion_proof(index, leaf_hashes)`` and ``consistency_proof(m,
  leaf_hashes)`` -- the recursive MTH / PATH / SUBPROOF definitions of RFC 6962 §2.1 --
  ``verify_inclusion`` (the Trillian inner/border chaining) and ``verify_consistency`` (a
  recursive replay of SUBPROOF, a different algorithm from our RFC 9162 §2.1.4.2 loop),
  ``ProofError``.
* ``sigstore`` 4.5.1 (verifier), the client of Sigstore's Rekor log: its RFC 6962 inclusion
  check, ported from Trillian. sigstore exposes no public call for it -- only
  ``Verifier.verify_artifact`` / ``verify_dsse``, which also need a Fulcio certificate and a
  Rekor-signed checkpoint -- so we call the function that step runs,
  ``sigstore._internal.merkle.verify_merkle_inclusion`` (a private module: hence the exact
  pin), on a real ``sigstore.models.TransparencyLogEntry`` built from
  ``sigstore_models.rekor.v1`` models. It hashes the raw leaf (``canonicalized_body``) itself.

Covered: every tree size 1..70 (every index, every consistency pair); random sizes up to
5,000 (hypothesis); sizes around tile boundaries (255/256/257, 511..513, 65,535/65,536/65,537)
read back through :class:`~indelible.core.tiles.TileNodes` from tiles a
:class:`~indelible.core.tiles.TileAppender` wrote; and a real SQLite log filled by the
:class:`~indelible.service.ingest.Sequencer`, proved by ``indelible.service.proofs``. Negative
checks flip single bits so that each oracle is seen to reject what ours rejects.
"""

from __future__ import annotations

import base64
import functools
import os
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pymerkle  # type: ignore[import-untyped]
import pytest
import tamperlog  # type: ignore[import-untyped]
from hypothesis import given, settings
from hypothesis import strategies as st
from sigstore._internal.merkle import verify_merkle_inclusion
from sigstore.errors import VerificationError
from sigstore.models import TransparencyLogEntry
from sigstore_models.common.v1 import LogId
from sigstore_models.rekor import v1 as rekor_v1

from indelible import errors
from indelible.core import merkle
from indelible.core.event import validate_event
from indelible.core.tiles import TileAppender, TileNodes
from indelible.service import proofs
from indelible.service.ingest import Sequencer
from indelible.service.logs import init_log
from indelible.storage.base import LogInfo, Store
from indelible.storage.sqlite import SQLiteStore
from tests.factories import billing_event
from tests.vectors import load_vectors

POOL = 65_537  # leaves available to every tree below; trees are prefixes of the pool
SMALL = 70
LARGE = 5_000
BOUNDARIES = (255, 256, 257, 511, 512, 513, 65_535, 65_536, 65_537)

# --------------------------------------------------------------------------- the leaves


def _pool() -> list[bytes]:
    """Leaf data of varied length, including ones that look like hash or node preimages."""
    rng = random.Random(6962)
    special = [b"", b"\x00", b"\x01", bytes(32), b"\x01" + bytes(64), b"\xff" * 33]
    lengths = (8, 31, 32, 33, 64, 65, 200)
    pool = special + [rng.randbytes(rng.choice(lengths)) for _ in range(POOL - len(special))]
    assert len(set(pool)) == POOL  # distinct leaves: a proof for a neighbour cannot pass
    return pool


DATA = _pool()


@functools.cache
def our_levels() -> list[list[bytes]]:
    """Every perfect-subtree hash over the pool, from our leaf_hash and pair_hashes."""
    levels = [[merkle.leaf_hash(d) for d in DATA]]
    while len(levels[-1]) > 1:
        levels.append(merkle.pair_hashes(levels[-1]))
    return levels


def our_nodes(size: int) -> merkle.NodeGetter:
    """Our node getter for a tree of ``size``: refuses any node reaching past the tree."""
    levels = our_levels()

    def get_node(level: int, index: int) -> bytes:
        assert (index + 1) << level <= size, f"node ({level}, {index}) is outside size {size}"
        return levels[level][index]

    return get_node


# --------------------------------------------------------------------------- the oracles


@functools.cache
def pym_tree() -> Any:
    tree = pymerkle.InmemoryTree(algorithm="sha256")
    tree.append_entries(DATA)
    return tree


@functools.cache
def tl_leaves() -> list[bytes]:
    return [tamperlog.hash_leaf(d) for d in DATA]


def sigstore_verify(
    data: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Rekor's inclusion check, as sigstore runs it on a transparency log entry.

    The models take protobuf JSON forms: uint64 as decimal strings (typed ``int``, hence the
    ignores, as in sigstore's own ``_from_v1_response``) and bytes as base64.
    """

    def b64(value: bytes) -> bytes:
        return base64.b64encode(value)

    inner = rekor_v1.TransparencyLogEntry(
        log_index=str(index),  # type: ignore[arg-type]
        log_id=LogId(key_id=b64(bytes(32))),
        kind_version=rekor_v1.KindVersion(kind="hashedrekord", version="0.0.1"),
        inclusion_proof=rekor_v1.InclusionProof(
            log_index=str(index),  # type: ignore[arg-type]
            root_hash=b64(root),
            tree_size=str(size),  # type: ignore[arg-type]
            hashes=[b64(h) for h in proof],
            checkpoint=rekor_v1.Checkpoint(envelope="not checked here"),
        ),
        canonicalized_body=b64(data),
    )
    verify_merkle_inclusion(TransparencyLogEntry(inner))


def pym_inclusion(tree: Any, index: int, size: int) -> list[bytes]:
    """pymerkle's audit path for 0-based ``index``, with its leaf hash checked and removed."""
    proof = tree.prove_inclusion(index + 1, size)
    assert proof.path[0] == tree.get_leaf(index + 1)
    return list(proof.path[1:])


def pym_verify_inclusion(
    tree: Any, leaf_hash: bytes, index: int, size: int, path: Sequence[bytes], root: bytes
) -> None:
    """pymerkle's verifier on *our* path (its rule bits depend on (index, size) alone)."""
    rule = tree.prove_inclusion(index + 1, size).rule
    proof = pymerkle.InclusionProof("sha256", True, size, index + 1, rule, [leaf_hash, *path])
    proof.verify(leaf_hash, root, index=index + 1, size=size)


# --------------------------------------------------------------------------- the checks


def flip(value: bytes, bit: int) -> bytes:
    """``value`` with one bit inverted."""
    out = bytearray(value)
    out[bit // 8 % len(out)] ^= 1 << bit % 8
    return bytes(out)


def check_inclusion(
    index: int,
    size: int,
    proof: list[bytes],
    root: bytes,
    *,
    leaves: Sequence[bytes] = (),
    data: Sequence[bytes] = DATA,
    tree: Any = None,
) -> None:
    """Our ``(proof, root)`` for leaf ``index`` of ``size`` against every oracle, both ways."""
    tree = pym_tree() if tree is None else tree
    leaves = leaves or tl_leaves()
    leaf = tree.get_leaf(index + 1)
    assert leaf == leaves[index] == merkle.leaf_hash(data[index])
    assert root == tree.get_root(size), f"root of size {size}"
    assert proof == pym_inclusion(tree, index, size), f"pymerkle path ({index}, {size})"
    assert proof == tamperlog.inclusion_proof(index, list(leaves[:size])), "tamperlog path"
    # our proof through each oracle's verifier, and the oracle's proof through ours
    pym_verify_inclusion(tree, leaf, index, size, proof, root)
    tamperlog.verify_inclusion(index, size, leaf, proof, root)
    sigstore_verify(data[index], index, size, proof, root)
    merkle.verify_inclusion(leaf, index, size, pym_inclusion(tree, index, size), root)


def reject_inclusion(index: int, size: int, proof: list[bytes], root: bytes, bit: int) -> None:
    """A flipped bit in any element, the root or the leaf: every verifier says no."""
    tree, data, leaf = pym_tree(), DATA[index], pym_tree().get_leaf(index + 1)
    forgeries = [
        (leaf, data, [*proof[:j], flip(p, bit), *proof[j + 1 :]], root) for j, p in enumerate(proof)
    ]
    forgeries.append((leaf, data, proof, flip(root, bit)))
    forgeries.append((flip(leaf, bit), flip(data, bit) if data else b"\x00", proof, root))
    if proof:  # one hash short
        forgeries.append((leaf, data, proof[:-1], root))
    if len(proof) > 1:  # the right hashes in the wrong order
        forgeries.append((leaf, data, [proof[1], proof[0], *proof[2:]], root))
    for bad_leaf, bad_data, bad_proof, bad_root in forgeries:
        with pytest.raises(errors.ProofError):
            merkle.verify_inclusion(bad_leaf, index, size, bad_proof, bad_root)
        with pytest.raises(tamperlog.ProofError):
            tamperlog.verify_inclusion(index, size, bad_leaf, bad_proof, bad_root)
        with pytest.raises(VerificationError):
            sigstore_verify(bad_data, index, size, bad_proof, bad_root)
        with pytest.raises(pymerkle.InvalidProof):
            pym_verify_inclusion(tree, bad_leaf, index, size, bad_proof, bad_root)


def check_consistency(
    m: int,
    n: int,
    proof: list[bytes],
    old_root: bytes,
    new_root: bytes,
    *,
    leaves: Sequence[bytes] = (),
    tree: Any = None,
) -> None:
    """Our consistency proof against tamperlog's bytes and both oracles' verifiers."""
    tree = pym_tree() if tree is None else tree
    leaves = leaves or tl_leaves()
    assert (old_root, new_root) == (tree.get_root(m), tree.get_root(n))
    theirs = tamperlog.consistency_proof(m, list(leaves[:n]))
    assert proof == theirs, f"consistency {m} -> {n}"
    tamperlog.verify_consistency(m, old_root, n, new_root, proof)
    merkle.verify_consistency(m, n, old_root, new_root, theirs)
    # pymerkle's own (differently shaped) proof must lead to our two roots
    pymerkle.verify_consistency(old_root, new_root, tree.prove_consistency(m, n), m, n)


def reject_consistency(
    m: int, n: int, proof: list[bytes], old: bytes, new: bytes, bit: int
) -> None:
    forgeries = [
        ([*proof[:j], flip(p, bit), *proof[j + 1 :]], old, new) for j, p in enumerate(proof)
    ]
    forgeries += [(proof, flip(old, bit), new), (proof, old, flip(new, bit))]
    if proof:
        forgeries.append((proof[:-1], old, new))
    for bad_proof, bad_old, bad_new in forgeries:
        with pytest.raises(errors.ProofError):
            merkle.verify_consistency(m, n, bad_old, bad_new, bad_proof)
        with pytest.raises(tamperlog.ProofError):
            tamperlog.verify_consistency(m, bad_old, n, bad_new, bad_proof)
    pym_proof = pym_tree().prove_consistency(m, n)
    for bad_old, bad_new in ((flip(old, bit), new), (old, flip(new, bit))):
        with pytest.raises(pymerkle.InvalidProof):
            pymerkle.verify_consistency(bad_old, bad_new, pym_proof, m, n)
    pym_proof.path[-1] = flip(pym_proof.path[-1], bit)
    with pytest.raises(pymerkle.InvalidProof):
        pymerkle.verify_consistency(old, new, pym_proof, m, n)


# --------------------------------------------------------------------------- in memory


def test_the_oracles_reproduce_the_published_rfc_6962_vectors() -> None:
    """The oracles are RFC 6962 on their own: transparency-dev's 8-leaf reference data."""
    ref = load_vectors("rfc6962-8leaf.json")
    data = [bytes.fromhex(x) for x in ref["leaf_inputs_hex"]]
    tree = pymerkle.InmemoryTree(algorithm="sha256")
    tree.append_entries(data)
    leaves = [tamperlog.hash_leaf(d) for d in data]
    assert [h.hex() for h in leaves] == ref["leaf_hashes"]
    for size, want in ref["roots_by_size"].items():
        assert tree.get_root(int(size)).hex() == want
        assert tamperlog.merkle_root(leaves[: int(size)]).hex() == want
    for case in ref["inclusion_proofs"]:
        index, size, root = case["leaf_index"], case["tree_size"], bytes.fromhex(case["root"])
        want = [bytes.fromhex(x) for x in case["proof"]]
        assert pym_inclusion(tree, index, size) == want
        assert tamperlog.inclusion_proof(index, leaves[:size]) == want
        tamperlog.verify_inclusion(index, size, leaves[index], want, root)
        sigstore_verify(data[index], index, size, want, root)
        pym_verify_inclusion(tree, leaves[index], index, size, want, root)
    for case in ref["consistency_proofs"]:
        m, n = case["size1"], case["size2"]
        old, new = bytes.fromhex(case["root1"]), bytes.fromhex(case["root2"])
        want = [bytes.fromhex(x) for x in case["proof"]]
        assert tamperlog.consistency_proof(m, leaves[:n]) == want
        tamperlog.verify_consistency(m, old, n, new, want)
        pymerkle.verify_consistency(old, new, tree.prove_consistency(m, n), m, n)


def test_roots_match_for_every_size_up_to_70_and_the_streaming_builder() -> None:
    builder = merkle.TreeBuilder()
    for size in range(1, SMALL + 1):
        builder.append(our_levels()[0][size - 1])
        expected = pym_tree().get_root(size)
        assert expected == tamperlog.merkle_root(tl_leaves()[:size])
        assert merkle.root(size, our_nodes(size)) == builder.root() == expected, size


def test_every_inclusion_proof_up_to_70_matches_and_verifies_everywhere() -> None:
    for size in range(1, SMALL + 1):
        nodes = our_nodes(size)
        root = merkle.root(size, nodes)
        for index in range(size):
            check_inclusion(index, size, merkle.inclusion_proof(index, size, nodes), root)


def test_every_consistency_proof_up_to_70_matches_and_verifies_everywhere() -> None:
    for n in range(1, SMALL + 1):
        new_root = merkle.root(n, our_nodes(n))
        for m in range(1, n + 1):
            proof = merkle.consistency_proof(m, n, our_nodes(n))
            check_consistency(m, n, proof, merkle.root(m, our_nodes(m)), new_root)


def test_flipped_bits_are_rejected_by_us_and_by_every_oracle() -> None:
    bit = 0
    for size in (1, 2, 3, 5, 8, 13, 31, 32, 33, 70):
        nodes = our_nodes(size)
        root = merkle.root(size, nodes)
        for index in sorted({0, size // 2, size - 1}):
            bit += 37  # a different bit of a different byte each time
            reject_inclusion(index, size, merkle.inclusion_proof(index, size, nodes), root, bit)
        for m in sorted({1, size // 2 or 1, size - 1 or 1}):
            bit += 37
            old = merkle.root(m, our_nodes(m))
            reject_consistency(m, size, merkle.consistency_proof(m, size, nodes), old, root, bit)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    size=st.integers(2, LARGE),
    picks=st.lists(st.integers(0, LARGE - 1), min_size=3, max_size=3),
    bit=st.integers(0, 255),
)
def test_random_sizes_up_to_5000_agree(size: int, picks: list[int], bit: int) -> None:
    nodes, tiles = our_nodes(size), tile_nodes(size)
    root = merkle.root(size, nodes)
    assert merkle.root(size, tiles.get_node) == root
    index, old_size = picks[0] % size, picks[1] % (size - 1) + 1
    for i in {0, index, size - 1, picks[2] % size}:
        proof = merkle.inclusion_proof(i, size, nodes)
        assert merkle.inclusion_proof(i, size, tiles.get_node) == proof
        check_inclusion(i, size, proof, root)
    proof = merkle.consistency_proof(old_size, size, nodes)
    assert merkle.consistency_proof(old_size, size, tiles.get_node) == proof
    old_root = merkle.root(old_size, our_nodes(old_size))
    check_consistency(old_size, size, proof, old_root, root)
    reject_inclusion(index, size, merkle.inclusion_proof(index, size, nodes), root, bit)
    reject_consistency(old_size, size, proof, old_root, root, bit)


# --------------------------------------------------------------------------- through tiles


@functools.cache
def tiles_written() -> dict[tuple[int, int], bytes]:
    """The tiles of the whole pool, written by TileAppender in uneven batches that stop on,
    before and after tile boundaries; each batch overwrites the tiles it changed."""
    appender, tiles, start, leaves = TileAppender(0, {}), {}, 0, our_levels()[0]
    cuts = [1, 255, 256, 257, 300, 511, 512, 513, 4_000, 65_535, 65_536, POOL]
    for end in cuts:
        tiles.update(appender.append(leaves[start:end]))
        assert appender.root() == pym_tree().get_root(end)
        start = end
    return tiles


def tile_nodes(size: int) -> TileNodes:
    tiles = tiles_written()
    return TileNodes(lambda level, index: tiles[(level, index)], size)


@pytest.mark.parametrize("size", BOUNDARIES)
def test_proofs_read_from_tiles_at_tile_boundaries_agree(size: int) -> None:
    nodes = tile_nodes(size).get_node
    root = merkle.root(size, nodes)
    assert root == merkle.root(size, our_nodes(size))
    for index in sorted({0, 1, 254, 255, 256, size // 2, size - 2, size - 1} & set(range(size))):
        check_inclusion(index, size, merkle.inclusion_proof(index, size, nodes), root)
    for old_size in sorted({1, 255, 256, 257, size // 2, size - 1, size} & set(range(1, size + 1))):
        proof = merkle.consistency_proof(old_size, size, nodes)
        old_root = merkle.root(old_size, our_nodes(old_size))
        check_consistency(old_size, size, proof, old_root, root)


# --------------------------------------------------------------------------- a real store


@dataclass
class StoredLog:
    store: Store
    info: LogInfo
    data: list[bytes]  # the stored leaves, read back from the store
    leaf_hashes: list[bytes]
    tree: Any  # pymerkle over the stored leaves


STORE_BATCHES = [1, 254, 1, 1, 200, 54, 1, 1, 300, 287]  # ends at 1, 255, 256, 257, ... 1100
STORE_SIZES = (1, 2, 255, 256, 257, 511, 512, 513, 1023, 1024, 1025, 1100)


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoredLog]:
    """A SQLite log filled by the Sequencer (the service's own ingest), in uneven batches."""
    directory = tmp_path_factory.mktemp("oracle")

    def now() -> int:
        return time.time_ns() // 1_000_000

    store = SQLiteStore(directory / "log.db")
    opened = init_log(
        store, directory / "keys", "acme", "example.com/acme", clock_ms=now, random_bytes=os.urandom
    )
    sequencer = Sequencer(store, opened.info, clock_ms=now, random_bytes=os.urandom)
    try:
        seq = 0
        for count in STORE_BATCHES:
            events = [
                validate_event(billing_event(n), now_ms=now()) for n in range(seq, seq + count)
            ]
            assert [r.seq for r in sequencer.append(events)] == list(range(seq, seq + count))
            seq += count
    finally:
        sequencer.close()
    rows = list(store.iter_entries(opened.info.log_id))
    data = [row.leaf for row in rows]
    tree = pymerkle.InmemoryTree(algorithm="sha256")
    tree.append_entries(data)
    yield StoredLog(store, opened.info, data, [tamperlog.hash_leaf(d) for d in data], tree)
    store.close()


def _stored_checks(log: StoredLog, cache: Callable[[], proofs.TileCache | None]) -> None:
    store, info = log.store, log.info
    assert store.tree_size(info.log_id) == sum(STORE_BATCHES) == len(log.data)
    for i, row in enumerate(store.iter_entries(info.log_id)):
        assert row.leaf_hash == log.tree.get_leaf(i + 1) == log.leaf_hashes[i]
    rng = random.Random(9162)
    for size in STORE_SIZES:
        for seq in sorted({0, size // 2, size - 1, rng.randrange(size)}):
            got = proofs.inclusion_proof(store, info, seq, size, cache=cache())
            assert (got.seq, got.tree_size, got.leaf_hash) == (seq, size, log.leaf_hashes[seq])
            check_inclusion(
                seq, size, got.proof, got.root, leaves=log.leaf_hashes, data=log.data, tree=log.tree
            )
        for old_size in (s for s in STORE_SIZES if s <= size):
            got_c = proofs.consistency_proof(store, info, old_size, size, cache=cache())
            check_consistency(
                old_size,
                size,
                got_c.proof,
                got_c.old_root,
                got_c.new_root,
                leaves=log.leaf_hashes,
                tree=log.tree,
            )


def test_proofs_served_from_a_stored_log_agree(stored: StoredLog) -> None:
    _stored_checks(stored, lambda: None)


def test_proofs_served_through_a_shared_tile_cache_agree(stored: StoredLog) -> None:
    shared = proofs.TileCache(max_tiles=3, max_sizes=2)  # small: entries get evicted too
    _stored_checks(stored, lambda: shared)
