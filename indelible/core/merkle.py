"""The RFC 6962 / RFC 9162 Merkle tree: hashes, roots, proofs, verification, streaming builder.

Hashing follows RFC 9162 §2.1.1 with SHA-256: a leaf hash is ``SHA-256(0x00 || leaf)``, an
interior node is ``SHA-256(0x01 || left || right)`` and the empty tree hashes to
``SHA-256("")``.

The tree code never touches storage. Proof and root construction take a :data:`NodeGetter`,
``get_node(level, index)``, which returns the hash of the *perfect* subtree of height ``level``
covering leaves ``[index * 2**level, (index + 1) * 2**level)``. Only perfect subtrees that are
complete within the tree size are ever requested; the hash of an incomplete right-hand subtree
is composed here from the perfect subtrees of its range, so every root or proof costs
O(log n) node reads.

Verification follows the algorithms of RFC 9162 §2.1.3.2 and §2.1.4.2 step by step and
returns ``None`` or raises :class:`~indelible.errors.ProofError` carrying the expected and
computed hashes in hex. Constructing a proof with impossible arguments raises
:class:`~indelible.errors.InputError`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

from indelible import errors

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "NodeGetter",
    "TreeBuilder",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "pair_hashes",
    "root",
    "root_from_inclusion_proof",
    "subtree_root",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

NodeGetter = Callable[[int, int], bytes]
"""``get_node(level, index)``: hash of the perfect subtree over leaves from ``index << level``."""

_sha256 = hashlib.sha256
# Copying a primed hasher is markedly cheaper than constructing a new one per node.
_NODE_PREFIX = _sha256(b"\x01")


def leaf_hash(data: bytes) -> bytes:
    """RFC 9162 §2.1.1 leaf hash: ``SHA-256(0x00 || data)``."""
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 §2.1.1 interior node hash: ``SHA-256(0x01 || left || right)``."""
    h = _NODE_PREFIX.copy()
    h.update(left)
    h.update(right)
    return h.digest()


def pair_hashes(nodes: Sequence[bytes]) -> list[bytes]:
    """One level up: the node hash of each pair (0, 1), (2, 3), ...; an odd last node is dropped."""
    copy = _NODE_PREFIX.copy
    out: list[bytes] = []
    append = out.append
    pairs = iter(nodes)
    for left, right in zip(pairs, pairs, strict=False):
        h = copy()
        h.update(left)
        h.update(right)
        append(h.digest())
    return out


def subtree_root(leaf_hashes: Sequence[bytes]) -> bytes:
    """RFC 9162 §2.1.1 MTH over already-hashed leaves (``EMPTY_ROOT`` for none).

    Pairs level by level and carries an odd last node up unchanged, which yields the same
    left-balanced tree as the recursive definition.
    """
    if not leaf_hashes:
        return EMPTY_ROOT
    nodes = list(leaf_hashes)
    while len(nodes) > 1:
        carry = [nodes[-1]] if len(nodes) % 2 else []
        nodes = pair_hashes(nodes) + carry
    return nodes[0]


def _fold(nodes: Sequence[bytes]) -> bytes:
    """Combine perfect subtrees listed left to right (largest first) into one hash."""
    acc = nodes[-1]
    for node in reversed(nodes[:-1]):
        acc = node_hash(node, acc)
    return acc


def _range_root(begin: int, end: int, get_node: NodeGetter) -> bytes:
    """MTH of leaves ``[begin, end)``; ``begin`` is aligned to the largest power of two in
    the range, as for every subtree an RFC 6962 tree or proof refers to."""
    count, nodes = end - begin, []
    for level in range(count.bit_length() - 1, -1, -1):
        if count >> level & 1:  # one perfect subtree per 1 bit, largest first
            nodes.append(get_node(level, begin >> level))
            begin += 1 << level
    return _fold(nodes)


def _check_size(name: str, value: int) -> None:
    if value < 0:
        raise errors.InputError(f"{name} must be >= 0, got {value}")


def root(size: int, get_node: NodeGetter) -> bytes:
    """Root hash of the tree of ``size`` leaves (RFC 9162 §2.1.1)."""
    _check_size("size", size)
    if size == 0:
        return EMPTY_ROOT
    return _range_root(0, size, get_node)


def _path(leaf: int, start_level: int, size: int, get_node: NodeGetter) -> list[bytes]:
    """Siblings, bottom up, of the node at ``start_level`` above ``leaf`` in a tree of ``size``.

    Below level ``inner`` the path runs inside the subtree holding ``leaf`` and the sibling is
    perfect (the topmost one may be the incomplete right edge). From ``inner`` up, the node
    also holds the last leaf: it has a left sibling exactly where ``leaf`` has a 1 bit.
    """
    inner = (leaf ^ (size - 1)).bit_length()
    proof: list[bytes] = []
    for level in range(start_level, inner):
        begin = ((leaf >> level) ^ 1) << level
        proof.append(_range_root(begin, min(begin + (1 << level), size), get_node))
    for level in range(max(inner, start_level), leaf.bit_length()):
        if leaf >> level & 1:
            proof.append(get_node(level, (leaf >> level) - 1))
    return proof


def inclusion_proof(index: int, size: int, get_node: NodeGetter) -> list[bytes]:
    """RFC 9162 §2.1.3.1 ``PATH(index, D[size])``: the audit path of leaf ``index``."""
    _check_size("index", index)
    if index >= size:
        raise errors.InputError(f"leaf index {index} is not below tree size {size}")
    return _path(index, 0, size, get_node)


def consistency_proof(old_size: int, new_size: int, get_node: NodeGetter) -> list[bytes]:
    """RFC 9162 §2.1.4.1 ``PROOF(old_size, D[new_size])``.

    The proof is the last perfect subtree of the old tree (left out when the old tree is itself
    perfect, the verifier holds its root) followed by that subtree's path in the new tree.
    """
    _check_size("old_size", old_size)
    if old_size == 0:
        raise errors.InputError("no consistency proof exists from an empty tree (old_size 0)")
    if old_size > new_size:
        raise errors.InputError(f"old_size {old_size} is larger than new_size {new_size}")
    if old_size == new_size:
        return []
    level = (old_size & -old_size).bit_length() - 1
    index = (old_size >> level) - 1
    head = [get_node(level, index)] if index else []
    return head + _path(old_size - 1, level, new_size, get_node)


def _check_hashes(proof: Sequence[bytes], what: str, seq: int | None = None) -> None:
    for i, element in enumerate(proof):
        if len(element) != HASH_SIZE:
            raise errors.ProofError(
                f"{what} element {i} is {len(element)} bytes, not {HASH_SIZE}", seq=seq
            )


def root_from_inclusion_proof(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes]
) -> bytes:
    """The root an inclusion proof leads to (RFC 9162 §2.1.3.2 steps 1-4).

    Raises :class:`ProofError` when the proof cannot belong to ``(index, size)``.
    """
    if not 0 <= index < size:
        raise errors.ProofError(f"leaf index {index} is not within tree size {size}")
    if len(leaf_hash) != HASH_SIZE:
        raise errors.ProofError(f"leaf hash is {len(leaf_hash)} bytes, not {HASH_SIZE}", seq=index)
    _check_hashes(proof, "inclusion proof", index)
    fn, sn, r = index, size - 1, leaf_hash  # step 2 and 3
    for p in proof:  # step 4
        if sn == 0:  # 4a
            raise errors.ProofError(f"inclusion proof is too long ({len(proof)})", seq=index)
        if fn & 1 or fn == sn:  # 4b
            r = node_hash(p, r)
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1  # 4c
    if sn != 0:  # step 5, first half
        raise errors.ProofError(f"inclusion proof is too short ({len(proof)})", seq=index)
    return r


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of the tree of ``size`` with ``root``."""
    computed = root_from_inclusion_proof(leaf_hash, index, size, proof)
    if computed != root:  # RFC 9162 §2.1.3.2 step 5
        raise errors.ProofError(
            f"inclusion proof leads to a different root for tree size {size}",
            seq=index,
            expected=root.hex(),
            computed=computed.hex(),
        )


def _check_consistency_args(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    if old_size <= 0:
        raise errors.ProofError(f"a consistency proof needs old_size >= 1, got {old_size}")
    if old_size > new_size:
        raise errors.ProofError(f"old_size {old_size} is larger than new_size {new_size}")
    if old_size != new_size:
        if not proof:  # RFC 9162 §2.1.4.2 step 1
            raise errors.ProofError(f"empty consistency proof for sizes {old_size}->{new_size}")
        for name, value in (("old root", old_root), ("new root", new_root)):
            if len(value) != HASH_SIZE:
                raise errors.ProofError(f"{name} is {len(value)} bytes, not {HASH_SIZE}")
    _check_hashes(proof, "consistency proof")


def _roots_from_consistency(
    old_size: int, new_size: int, old_root: bytes, proof: Sequence[bytes]
) -> tuple[bytes, bytes]:
    """RFC 9162 §2.1.4.2 steps 2-6: the (old, new) roots the proof leads to."""
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # step 2
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1  # step 3
    while fn & 1:  # step 4
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]  # step 5
    for c in path[1:]:  # step 6
        if sn == 0:  # 6a
            raise errors.ProofError(f"consistency proof is too long ({len(proof)})")
        if fn & 1 or fn == sn:  # 6b
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1  # 6c
    if sn != 0:  # step 7, last check
        raise errors.ProofError(f"consistency proof is too short ({len(proof)})")
    return fr, sr


def _check_root(which: str, size: int, expected: bytes, computed: bytes) -> None:
    if computed != expected:
        raise errors.ProofError(
            f"consistency proof leads to a different {which} root for tree size {size}",
            expected=expected.hex(),
            computed=computed.hex(),
        )


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree (``new_size``, ``new_root``) extends (``old_size``, ``old_root``).

    Equal sizes need an empty proof and equal roots. ``old_size`` 0 is always rejected: every
    tree extends the empty tree, so such a "proof" would prove nothing.
    """
    _check_consistency_args(old_size, new_size, old_root, new_root, proof)
    if old_size == new_size:
        if proof:
            raise errors.ProofError(f"equal tree sizes ({old_size}) need an empty proof")
        if old_root != new_root:
            raise errors.ProofError(
                f"two different roots for the same tree size {old_size}",
                expected=old_root.hex(),
                computed=new_root.hex(),
            )
        return
    fr, sr = _roots_from_consistency(old_size, new_size, old_root, proof)
    _check_root("old", old_size, old_root, fr)  # step 7
    _check_root("new", new_size, new_root, sr)


class TreeBuilder:
    """A compact range: the perfect subtrees of a growing tree, for streaming leaf hashes.

    Holds one hash per 1 bit of the size (O(log n) memory). :meth:`extend` hashes level by
    level over the whole batch, about one hash call per new interior node.
    """

    __slots__ = ("_nodes", "_size")

    def __init__(self) -> None:
        self._size = 0
        self._nodes: list[bytes] = []  # by level; b"" where the size has a 0 bit

    @classmethod
    def from_compact_range(cls, size: int, nodes: Sequence[bytes]) -> TreeBuilder:
        """Resume from :attr:`compact_range` (perfect subtrees, left to right) at ``size``."""
        _check_size("size", size)
        levels = [lvl for lvl in range(size.bit_length()) if size >> lvl & 1]
        if len(nodes) != len(levels):
            raise errors.InputError(
                f"size {size} needs {len(levels)} range hashes, not {len(nodes)}"
            )
        _check_leaf_hashes(nodes)
        builder = cls()
        builder._size = size
        builder._nodes = [b""] * size.bit_length()
        for level, node in zip(reversed(levels), nodes, strict=True):
            builder._nodes[level] = node
        return builder

    @property
    def size(self) -> int:
        """Number of leaves appended so far."""
        return self._size

    @property
    def compact_range(self) -> list[bytes]:
        """The perfect subtrees covering the tree, left to right (largest first)."""
        return [node for node in reversed(self._nodes) if node]

    def root(self) -> bytes:
        """Root hash at the current size, from O(log n) hashes."""
        nodes = self.compact_range
        return _fold(nodes) if nodes else EMPTY_ROOT

    def append(self, leaf_hash: bytes) -> None:
        """Append one leaf hash."""
        _check_leaf_hashes((leaf_hash,))
        nodes, node, level, pos = self._nodes, leaf_hash, 0, self._size
        while pos & 1:  # complete every subtree the new leaf closes
            node, nodes[level] = node_hash(nodes[level], node), b""
            level, pos = level + 1, pos >> 1
        if level == len(nodes):
            nodes.append(b"")
        nodes[level] = node
        self._size += 1

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        """Append many leaf hashes (32 bytes each)."""
        self.extend_collect(leaf_hashes, 0)

    def extend_collect(self, leaf_hashes: Iterable[bytes], every: int) -> dict[int, list[bytes]]:
        """Append leaf hashes; return the new nodes created at each level ``0, every, 2*every..``.

        With ``every`` 0 nothing is collected. A node is created once its subtree is complete,
        so for ``every`` 8 the lists are exactly the new hashes of the C2SP tlog-tiles levels.
        """
        nodes = list(leaf_hashes)
        _check_leaf_hashes(nodes)
        created: dict[int, list[bytes]] = {}
        pos, self._size = self._size, self._size + len(nodes)
        level = 0
        while nodes:
            if every and level % every == 0:
                created[level] = nodes
            nodes, pos = self._merge_level(level, pos, nodes), pos >> 1
            level += 1
        return created

    def _merge_level(self, level: int, pos: int, nodes: list[bytes]) -> list[bytes]:
        """Merge new ``nodes`` starting at position ``pos`` of ``level``; return the parents."""
        if level == len(self._nodes):
            self._nodes.append(b"")
        if pos & 1:  # a pending left sibling completes with the first new node
            nodes = [self._nodes[level], *nodes]
        self._nodes[level] = nodes[-1] if len(nodes) & 1 else b""
        return pair_hashes(nodes)


def _check_leaf_hashes(hashes: Sequence[bytes]) -> None:
    if hashes and set(map(len, hashes)) != {HASH_SIZE}:
        bad = next(i for i, h in enumerate(hashes) if len(h) != HASH_SIZE)
        raise errors.InputError(f"hash {bad} is {len(hashes[bad])} bytes, not {HASH_SIZE}")
