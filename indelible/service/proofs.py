"""Inclusion and consistency proofs served from the stored tiles (O(log n) tile reads)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from indelible.core import merkle
from indelible.core.tiles import TileNodes
from indelible.errors import InputError, NotFound
from indelible.storage.base import LogInfo, Store

__all__ = ["ConsistencyProof", "InclusionProof", "consistency_proof", "inclusion_proof"]


@dataclass(frozen=True)
class InclusionProof:
    seq: int
    tree_size: int
    leaf_hash: bytes
    root: bytes
    proof: list[bytes]
    checkpoint: str | None  # the signed note for tree_size, when one was published

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "tree_size": self.tree_size,
            "leaf_hash": self.leaf_hash.hex(),
            "root": self.root.hex(),
            "proof": [node.hex() for node in self.proof],
            "checkpoint": self.checkpoint,
        }


@dataclass(frozen=True)
class ConsistencyProof:
    old_size: int
    new_size: int
    old_root: bytes
    new_root: bytes
    proof: list[bytes]

    def to_dict(self) -> dict[str, Any]:
        return {
            "old_size": self.old_size,
            "new_size": self.new_size,
            "old_root": self.old_root.hex(),
            "new_root": self.new_root.hex(),
            "proof": [node.hex() for node in self.proof],
        }


def _nodes(store: Store, log: LogInfo, size: int) -> TileNodes:
    current = store.tree_size(log.log_id)
    if size > current:
        raise NotFound(f"tree size {size} is beyond the log's {current} entries")
    return TileNodes(lambda level, index: store.get_tile(log.log_id, level, index), size)


def _note(store: Store, log: LogInfo, size: int) -> str | None:
    try:
        return store.get_checkpoint(log.log_id, size).note
    except NotFound:
        return None


def inclusion_proof(
    store: Store, log: LogInfo, seq: int, tree_size: int | None = None
) -> InclusionProof:
    """Prove entry ``seq`` is in the tree of ``tree_size`` (default: latest checkpoint)."""
    if tree_size is None:
        latest = store.latest_checkpoint(log.log_id)
        tree_size = latest.size if latest and latest.size > seq else store.tree_size(log.log_id)
    if not 0 <= seq < tree_size:
        raise InputError(f"seq {seq} is not in a tree of size {tree_size}")
    nodes = _nodes(store, log, tree_size)
    proof = merkle.inclusion_proof(seq, tree_size, nodes.get_node)
    root = merkle.root(tree_size, nodes.get_node)
    leaf = nodes.get_node(0, seq)
    merkle.verify_inclusion(leaf, seq, tree_size, proof, root)
    return InclusionProof(seq, tree_size, leaf, root, proof, _note(store, log, tree_size))


def consistency_proof(store: Store, log: LogInfo, old_size: int, new_size: int) -> ConsistencyProof:
    """Prove the tree of ``new_size`` extends the tree of ``old_size``."""
    if not 0 < old_size <= new_size:
        raise InputError("need 0 < OLD <= NEW")
    nodes = _nodes(store, log, new_size)
    proof = merkle.consistency_proof(old_size, new_size, nodes.get_node)
    old_root = merkle.root(old_size, nodes.get_node)
    new_root = merkle.root(new_size, nodes.get_node)
    merkle.verify_consistency(old_size, new_size, old_root, new_root, proof)
    return ConsistencyProof(old_size, new_size, old_root, new_root, proof)
