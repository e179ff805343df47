"""Inclusion and consistency proofs served from the stored tiles (O(log n) tile reads).

A :class:`TileCache` keeps the hashes of recently used *full* tiles, which never change: a
server passes one to every call so that proofs cost a few dict lookups and, at most, the
hashing of one level-0 tile.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any

from indelible.core import merkle
from indelible.core.tiles import TileNodes
from indelible.errors import InputError, NotFound
from indelible.storage.base import LogInfo, Store

__all__ = [
    "ConsistencyProof",
    "InclusionProof",
    "TileCache",
    "consistency_proof",
    "inclusion_proof",
]

_Key = tuple[int, int]
_Levels = list[list[bytes]]


class TileCache(MutableMapping[_Key, _Levels]):
    """A bounded, thread-safe LRU of one log's full tiles' hashes (~34 KiB a tile), and the
    node readers of its most recent tree sizes (their partial right-edge tiles hashed once)."""

    def __init__(self, max_tiles: int = 1024, max_sizes: int = 4) -> None:
        self._max = max_tiles
        self._data: OrderedDict[_Key, _Levels] = OrderedDict()
        self._lock = threading.Lock()
        self._max_sizes = max_sizes
        self._readers: OrderedDict[int, TileNodes] = OrderedDict()

    def nodes(self, get_tile: Callable[[int, int], bytes], size: int) -> TileNodes:
        """The node reader for ``size``, shared by every proof at that size."""
        with self._lock:
            reader = self._readers.get(size)
            if reader is not None:
                self._readers.move_to_end(size)
                return reader
        reader = TileNodes(get_tile, size, self)
        with self._lock:
            self._readers[size] = reader
            while len(self._readers) > self._max_sizes:
                self._readers.popitem(last=False)
        return reader

    def __getitem__(self, key: _Key) -> _Levels:
        with self._lock:
            value = self._data[key]
            self._data.move_to_end(key)
            return value

    def __setitem__(self, key: _Key, value: _Levels) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self._max:
                self._data.popitem(last=False)

    def __delitem__(self, key: _Key) -> None:
        with self._lock:
            del self._data[key]

    def __iter__(self) -> Iterator[_Key]:
        return iter(list(self._data))

    def __len__(self) -> int:
        return len(self._data)


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


def _nodes(store: Store, log: LogInfo, size: int, cache: TileCache | None) -> TileNodes:
    current = store.tree_size(log.log_id)
    if size > current:
        raise NotFound(f"tree size {size} is beyond the log's {current} entries")

    def get_tile(level: int, index: int) -> bytes:
        return store.get_tile(log.log_id, level, index)

    if cache is None:
        return TileNodes(get_tile, size)
    return cache.nodes(get_tile, size)


def _note(store: Store, log: LogInfo, size: int) -> str | None:
    try:
        return store.get_checkpoint(log.log_id, size).note
    except NotFound:
        return None


def inclusion_proof(
    store: Store,
    log: LogInfo,
    seq: int,
    tree_size: int | None = None,
    *,
    cache: TileCache | None = None,
) -> InclusionProof:
    """Prove entry ``seq`` is in the tree of ``tree_size`` (default: latest checkpoint)."""
    if tree_size is None:
        latest = store.latest_checkpoint(log.log_id)
        tree_size = latest.size if latest and latest.size > seq else store.tree_size(log.log_id)
    if not 0 <= seq < tree_size:
        raise InputError(f"seq {seq} is not in a tree of size {tree_size}")
    nodes = _nodes(store, log, tree_size, cache)
    proof = merkle.inclusion_proof(seq, tree_size, nodes.get_node)
    root = merkle.root(tree_size, nodes.get_node)
    leaf = nodes.get_node(0, seq)
    return InclusionProof(seq, tree_size, leaf, root, proof, _note(store, log, tree_size))


def consistency_proof(
    store: Store, log: LogInfo, old_size: int, new_size: int, *, cache: TileCache | None = None
) -> ConsistencyProof:
    """Prove the tree of ``new_size`` extends the tree of ``old_size``."""
    if not 0 < old_size <= new_size:
        raise InputError("need 0 < OLD <= NEW")
    nodes = _nodes(store, log, new_size, cache)
    proof = merkle.consistency_proof(old_size, new_size, nodes.get_node)
    old_root = merkle.root(old_size, nodes.get_node)
    new_root = merkle.root(new_size, nodes.get_node)
    return ConsistencyProof(old_size, new_size, old_root, new_root, proof)
