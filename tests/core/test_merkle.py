"""RFC 6962 / RFC 9162 Merkle tree: public vectors, the naive reference, properties."""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from indelible import errors
from indelible.core import merkle
from indelible.core.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    TreeBuilder,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root,
    root_from_inclusion_proof,
    subtree_root,
    verify_consistency,
    verify_inclusion,
)
from tests import reference_merkle as ref
from tests.vectors import VECTORS_DIR

VECTORS = VECTORS_DIR
TD = VECTORS / "transparency-dev-merkle" / "testdata"
# testdata/subtreeinclusion and testdata/subtreeconsistency are not collected: they cover the
# subtree proofs of draft-ietf-plants-merkle-tree-certs, which are not part of RFC 6962/9162.
INCLUSION = sorted((TD / "inclusion").rglob("*.json"))
CONSISTENCY = sorted((TD / "consistency").rglob("*.json"))
RFC = json.loads((VECTORS / "rfc6962-8leaf.json").read_text())

MAX_SIZE = 300
LEAVES = [ref.leaf_hash(i.to_bytes(4, "big")) for i in range(MAX_SIZE + 2)]


def b64(value: str) -> bytes:
    return base64.b64decode(value)


def case_id(path: Path) -> str:
    return str(path.relative_to(TD)).removesuffix(".json")


@functools.cache
def ref_root(size: int) -> bytes:
    return ref.mth(LEAVES[:size])


def getter(leaves: list[bytes], calls: list[tuple[int, int]] | None = None) -> merkle.NodeGetter:
    """A NodeGetter over ``leaves`` from the reference MTH, refusing incomplete subtrees."""

    def get_node(level: int, index: int) -> bytes:
        assert level >= 0 and index >= 0
        assert (index + 1) << level <= len(leaves), "asked for an incomplete subtree"
        if calls is not None:
            calls.append((level, index))
        return ref.mth(leaves[index << level : (index + 1) << level])

    return get_node


def table_getter(table: list[list[str]]) -> merkle.NodeGetter:
    return lambda level, index: bytes.fromhex(table[level][index])


def flip(data: bytes, bit: int) -> bytes:
    bit %= len(data) * 8
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


# --- transparency-dev/merkle vectors --------------------------------------------------------


def test_every_vector_is_collected() -> None:
    assert (len(INCLUSION), len(CONSISTENCY)) == (98, 98)
    for cases in (INCLUSION, CONSISTENCY):
        assert sum(json.loads(p.read_text())["wantErr"] is False for p in cases) == 6


@pytest.mark.parametrize("case", INCLUSION, ids=case_id)
def test_transparency_dev_inclusion(case: Path) -> None:
    v = json.loads(case.read_text())
    args = (b64(v["leafHash"]), v["leafIdx"], v["treeSize"], [b64(p) for p in v["proof"] or []])
    if v["wantErr"]:
        with pytest.raises(errors.ProofError):
            verify_inclusion(*args, b64(v["root"]))
    else:
        verify_inclusion(*args, b64(v["root"]))


HAPPY_INCLUSION = [p for p in INCLUSION if p.parent.name.isdigit() and p.stem == "happy-path"]


@pytest.mark.parametrize("case", HAPPY_INCLUSION, ids=case_id)
def test_transparency_dev_inclusion_happy_paths_are_what_we_generate(case: Path) -> None:
    v = json.loads(case.read_text())
    nodes = table_getter(RFC["node_hashes_by_level"])
    assert bytes.fromhex(RFC["leaf_hashes"][v["leafIdx"]]) == b64(v["leafHash"])
    proof = inclusion_proof(v["leafIdx"], v["treeSize"], nodes)
    assert proof == [b64(p) for p in v["proof"] or []]


@pytest.mark.parametrize("case", CONSISTENCY, ids=case_id)
def test_transparency_dev_consistency(case: Path) -> None:
    v = json.loads(case.read_text())
    args = (v["size1"], v["size2"], b64(v["root1"]), b64(v["root2"]))
    proof = [b64(p) for p in v["proof"] or []]
    if v["wantErr"]:
        with pytest.raises(errors.ProofError):
            verify_consistency(*args, proof)
    else:
        verify_consistency(*args, proof)
        if case.parent.name.isdigit():
            nodes = table_getter(RFC["node_hashes_by_level"])
            assert consistency_proof(v["size1"], v["size2"], nodes) == proof


# --- the RFC 6962 8-leaf example ------------------------------------------------------------

RFC_LEAVES = [bytes.fromhex(h) for h in RFC["leaf_hashes"]]


def test_rfc_leaf_hashes() -> None:
    assert [leaf_hash(bytes.fromhex(x)) for x in RFC["leaf_inputs_hex"]] == RFC_LEAVES


@pytest.mark.parametrize("size", sorted(int(s) for s in RFC["roots_by_size"]))
def test_rfc_root_by_size(size: int) -> None:
    want = bytes.fromhex(RFC["roots_by_size"][str(size)])
    assert root(size, table_getter(RFC["node_hashes_by_level"])) == want
    assert subtree_root(RFC_LEAVES[:size]) == want
    assert ref.mth(RFC_LEAVES[:size]) == want
    builder = TreeBuilder()
    builder.extend(RFC_LEAVES[:size])
    assert builder.root() == want


@pytest.mark.parametrize("level", range(len(RFC["node_hashes_by_level"])))
def test_rfc_node_hashes(level: int) -> None:
    for index, want in enumerate(RFC["node_hashes_by_level"][level]):
        assert subtree_root(RFC_LEAVES[index << level : (index + 1) << level]).hex() == want


@pytest.mark.parametrize(
    "case", RFC["inclusion_proofs"], ids=lambda c: f"leaf{c['leaf_index']}-size{c['tree_size']}"
)
def test_rfc_inclusion_proof(case: dict[str, Any]) -> None:
    index, size, leaf = case["leaf_index"], case["tree_size"], bytes.fromhex(case["leaf_hash"])
    want = [bytes.fromhex(p) for p in case["proof"]]
    assert leaf_hash(bytes.fromhex(case["leaf_hex"])) == leaf
    assert inclusion_proof(index, size, table_getter(RFC["node_hashes_by_level"])) == want
    verify_inclusion(leaf, index, size, want, bytes.fromhex(case["root"]))


@pytest.mark.parametrize(
    "case", RFC["consistency_proofs"], ids=lambda c: f"{c['size1']}-to-{c['size2']}"
)
def test_rfc_consistency_proof(case: dict[str, Any]) -> None:
    old, new = case["size1"], case["size2"]
    want = [bytes.fromhex(p) for p in case["proof"]]
    assert consistency_proof(old, new, table_getter(RFC["node_hashes_by_level"])) == want
    verify_consistency(old, new, bytes.fromhex(case["root1"]), bytes.fromhex(case["root2"]), want)


def test_rfc_hasher_vectors() -> None:
    hv = RFC["hasher_vectors"]
    assert EMPTY_ROOT.hex() == hv["empty_tree_root"]["want"]
    assert subtree_root([]) == EMPTY_ROOT
    assert root(0, table_getter([])) == EMPTY_ROOT
    assert TreeBuilder().root() == EMPTY_ROOT
    assert leaf_hash(b"").hex() == hv["leaf_hash_of_empty_leaf"]["want"]
    assert leaf_hash(b"L123456").hex() == hv["leaf_hash_of_L123456"]["want"]
    assert node_hash(b"N123", b"N456").hex() == hv["node_hash_N123_N456"]["want"]
    assert HASH_SIZE == len(EMPTY_ROOT) == 32


# --- argument errors and evidence -----------------------------------------------------------

NODES = getter(LEAVES[:8])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: inclusion_proof(8, 8, NODES), "not below tree size 8"),
        (lambda: inclusion_proof(0, 0, NODES), "not below tree size 0"),
        (lambda: inclusion_proof(-1, 8, NODES), "index must be >= 0"),
        (lambda: consistency_proof(0, 8, NODES), "empty tree"),
        (lambda: consistency_proof(-1, 8, NODES), "old_size must be >= 0"),
        (lambda: consistency_proof(5, 4, NODES), "larger than new_size"),
        (lambda: root(-1, NODES), "size must be >= 0"),
    ],
    ids=["index-equals-size", "empty-tree", "negative-index", "old-size-zero", "negative-old",
         "old-larger", "negative-size"],
)  # fmt: skip
def test_bad_arguments_raise_input_error(call: Callable[[], object], message: str) -> None:
    with pytest.raises(errors.InputError, match=message):
        call()


def test_wrong_root_error_carries_expected_and_computed() -> None:
    proof = inclusion_proof(2, 5, getter(LEAVES[:5]))
    with pytest.raises(errors.ProofError) as info:
        verify_inclusion(LEAVES[2], 2, 5, proof, ref_root(4))
    assert info.value.seq == 2
    assert info.value.expected == ref_root(4).hex()
    assert info.value.computed == ref_root(5).hex()
    assert info.value.details()["computed"] == ref_root(5).hex()


def test_wrong_old_root_error_carries_expected_and_computed() -> None:
    proof = consistency_proof(3, 7, getter(LEAVES[:7]))
    with pytest.raises(errors.ProofError, match="different old root") as info:
        verify_consistency(3, 7, ref_root(2), ref_root(7), proof)
    assert (info.value.expected, info.value.computed) == (ref_root(2).hex(), ref_root(3).hex())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((LEAVES[0], -1, 4, []), "not within tree size"),
        ((LEAVES[0][:31], 0, 4, []), "leaf hash is 31 bytes"),
        ((LEAVES[0], 0, 4, [LEAVES[1], b"\x00" * 33]), "element 1 is 33 bytes"),
        ((LEAVES[0], 0, 2, [LEAVES[1], LEAVES[2]]), "too long"),
        ((LEAVES[0], 0, 4, [LEAVES[1]]), "too short"),
    ],
    ids=["negative-index", "short-leaf", "long-element", "too-long", "too-short"],
)
def test_malformed_inclusion_proofs(args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(errors.ProofError, match=message):
        root_from_inclusion_proof(*args)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0, 0, EMPTY_ROOT, EMPTY_ROOT, []), "old_size >= 1"),
        ((-1, 3, EMPTY_ROOT, EMPTY_ROOT, [LEAVES[0]]), "old_size >= 1"),
        ((3, 2, LEAVES[0], LEAVES[0], []), "larger than new_size"),
        ((2, 2, LEAVES[0], LEAVES[0], [LEAVES[0]]), "need an empty proof"),
        ((2, 3, LEAVES[0], LEAVES[0], []), "empty consistency proof"),
        ((2, 3, LEAVES[0][:16], LEAVES[0], [LEAVES[1]]), "old root is 16 bytes"),
        ((2, 3, LEAVES[0], LEAVES[0][:31], [LEAVES[1]]), "new root is 31 bytes"),
        ((2, 3, LEAVES[0], LEAVES[0], [b"x"]), "consistency proof element 0 is 1 bytes"),
        ((2, 2, LEAVES[0], LEAVES[1], []), "two different roots for the same tree size 2"),
        ((2, 3, LEAVES[0], LEAVES[0], [LEAVES[1]] * 3), "too long"),
        ((3, 8, LEAVES[0], LEAVES[0], [LEAVES[1]]), "too short"),
    ],
    ids=["sizes-zero", "negative-old", "old-larger", "equal-sizes-proof", "empty-proof",
         "short-old-root", "short-new-root", "short-element", "equal-sizes-roots-differ",
         "too-long", "too-short"],
)  # fmt: skip
def test_malformed_consistency_proofs(args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(errors.ProofError, match=message):
        verify_consistency(*args)


# --- properties against the reference -------------------------------------------------------

sizes = st.integers(1, MAX_SIZE)


@st.composite
def size_and_index(draw: st.DrawFn) -> tuple[int, int]:
    size = draw(sizes)
    return size, draw(st.integers(0, size - 1))


@st.composite
def two_sizes(draw: st.DrawFn) -> tuple[int, int]:
    new = draw(sizes)
    return draw(st.integers(1, new)), new


@settings(deadline=None)
@given(sizes)
def test_root_matches_reference(size: int) -> None:
    calls: list[tuple[int, int]] = []
    assert root(size, getter(LEAVES[:size], calls)) == ref_root(size)
    assert len(calls) == bin(size).count("1")
    assert subtree_root(LEAVES[:size]) == ref_root(size)


@settings(deadline=None)
@given(size_and_index())
def test_inclusion_proof_matches_reference_and_verifies(case: tuple[int, int]) -> None:
    size, index = case
    calls: list[tuple[int, int]] = []
    proof = inclusion_proof(index, size, getter(LEAVES[:size], calls))
    assert proof == ref.path(index, LEAVES[:size])
    assert len(calls) <= 2 * size.bit_length()
    verify_inclusion(LEAVES[index], index, size, proof, ref_root(size))


@settings(deadline=None)
@given(two_sizes())
def test_consistency_proof_matches_reference_and_verifies(case: tuple[int, int]) -> None:
    old, new = case
    calls: list[tuple[int, int]] = []
    proof = consistency_proof(old, new, getter(LEAVES[:new], calls))
    assert proof == ref.proof(old, LEAVES[:new])
    assert len(calls) <= 3 * new.bit_length()
    verify_consistency(old, new, ref_root(old), ref_root(new), proof)


@settings(deadline=None)
@given(size_and_index(), st.data())
def test_any_single_bit_flip_breaks_inclusion(case: tuple[int, int], data: st.DataObject) -> None:
    size, index = case
    proof = ref.path(index, LEAVES[:size])
    leaf, good_root = LEAVES[index], ref_root(size)
    target = data.draw(st.integers(-2, len(proof) - 1), label="target")
    bit = data.draw(st.integers(0, 255), label="bit")
    if target == -2:
        leaf = flip(leaf, bit)
    elif target == -1:
        good_root = flip(good_root, bit)
    else:
        proof[target] = flip(proof[target], bit)
    with pytest.raises(errors.ProofError):
        verify_inclusion(leaf, index, size, proof, good_root)


@settings(deadline=None)
@given(size_and_index(), st.sampled_from([-1, 1]))
def test_index_or_size_off_by_one_breaks_inclusion(case: tuple[int, int], delta: int) -> None:
    size, index = case
    proof = ref.path(index, LEAVES[:size])
    with pytest.raises(errors.ProofError):
        verify_inclusion(LEAVES[index], index + delta, size, proof, ref_root(size))
    # Against the true root of the other size; an RFC 6962 proof alone does not bind the
    # size, the (size, root) pair of a checkpoint does.
    with pytest.raises(errors.ProofError):
        verify_inclusion(LEAVES[index], index, size + delta, proof, ref_root(size + delta))


@settings(deadline=None)
@given(two_sizes(), st.data())
def test_any_single_bit_flip_breaks_consistency(case: tuple[int, int], data: st.DataObject) -> None:
    old, new = case
    proof = ref.proof(old, LEAVES[:new])
    old_root, new_root = ref_root(old), ref_root(new)
    target = data.draw(st.integers(-2, len(proof) - 1), label="target")
    bit = data.draw(st.integers(0, 255), label="bit")
    if target == -2:
        old_root = flip(old_root, bit)
    elif target == -1:
        new_root = flip(new_root, bit)
    else:
        proof[target] = flip(proof[target], bit)
    with pytest.raises(errors.ProofError):
        verify_consistency(old, new, old_root, new_root, proof)


@settings(deadline=None)
@given(two_sizes(), st.sampled_from(["old", "new"]), st.sampled_from([-1, 1]))
def test_size_off_by_one_breaks_consistency(case: tuple[int, int], which: str, delta: int) -> None:
    old, new = case
    proof = ref.proof(old, LEAVES[:new])
    if which == "old":
        old += delta
    else:
        new += delta
    if 1 <= old <= new and ref.proof(old, LEAVES[:new]) == proof:
        return  # the same proof is genuinely valid for the shifted sizes
    with pytest.raises(errors.ProofError):
        verify_consistency(old, new, ref_root(old), ref_root(new), proof)


# --- TreeBuilder ----------------------------------------------------------------------------


def test_tree_builder_root_at_every_prefix() -> None:
    one, many = TreeBuilder(), TreeBuilder()
    for size in range(MAX_SIZE + 1):
        assert one.size == many.size == size
        assert one.root() == many.root() == ref_root(size)
        one.append(LEAVES[size])
        many.extend(iter([LEAVES[size]]))


@settings(deadline=None)
@given(st.lists(st.integers(0, 70), max_size=12))
def test_tree_builder_batches_match_reference(batches: list[int]) -> None:
    builder, size = TreeBuilder(), 0
    for count in batches:
        count = min(count, MAX_SIZE - size)
        builder.extend(LEAVES[size : size + count])
        size += count
        assert builder.root() == ref_root(size)
        resumed = TreeBuilder.from_compact_range(size, builder.compact_range)
        assert resumed.root() == ref_root(size)
        resumed.extend(LEAVES[size : size + 3])
        assert resumed.root() == ref_root(size + 3)


def test_extend_collect_reports_completed_nodes_by_level() -> None:
    builder = TreeBuilder()
    builder.extend(LEAVES[:3])
    created = builder.extend_collect(LEAVES[3:8], 2)
    assert created == {0: LEAVES[3:8], 2: [ref.mth(LEAVES[0:4]), ref.mth(LEAVES[4:8])]}
    created = builder.extend_collect(LEAVES[8:16], 2)
    assert created == {
        0: LEAVES[8:16],
        2: [ref.mth(LEAVES[8:12]), ref.mth(LEAVES[12:16])],
        4: [ref.mth(LEAVES[0:16])],
    }
    assert builder.extend_collect([], 1) == {}


def test_tree_builder_rejects_bad_hashes_and_ranges() -> None:
    with pytest.raises(errors.InputError, match="hash 1 is 31 bytes"):
        TreeBuilder().extend([LEAVES[0], LEAVES[1][:31]])
    with pytest.raises(errors.InputError, match="hash 0 is 0 bytes"):
        TreeBuilder().append(b"")
    with pytest.raises(errors.InputError, match="needs 2 range hashes, not 1"):
        TreeBuilder.from_compact_range(5, [LEAVES[0]])
    with pytest.raises(errors.InputError, match="size must be >= 0"):
        TreeBuilder.from_compact_range(-1, [])
