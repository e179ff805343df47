"""Full verification of a log from its stored bytes.

Steps, in order; the first failure raises a ``VerificationError`` naming the seq:

1. Entries, in seq order: seqs are contiguous from 0; the ``leaf_hash`` column equals
   SHA-256(0x00 ‖ leaf); the leaf is canonical JSON of a well-formed entry whose own ``seq``
   is its position; ``prev_hash`` equals the previous leaf hash (the chain); every
   lookup-hint column (and related-record reference) equals the value in the leaf; every
   personal value still present matches its commitment. Large logs are checked in parallel,
   one seq range per process.
2. The tree: rebuilt from the recomputed leaf hashes; every stored tile must equal the
   recomputed one (a difference names the first seq under it).
3. Every stored checkpoint: its signature verifies with the log key, and its root equals the
   recomputed root at its size (a difference names the seq range since the last good one).
4. Checkpoints held outside (``--checkpoint``): signature, then the log still has at least
   that many entries (else: truncated) and the same root at that size (else: rewritten).
"""

from __future__ import annotations

import hashlib
import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

from indelible.core.checkpoint import Checkpoint, open_checkpoint
from indelible.core.entry import (
    GENESIS_PREV_HASH,
    DecodedEntry,
    IndexColumns,
    decode,
    index_columns,
    related_refs,
)
from indelible.core.merkle import EMPTY_ROOT
from indelible.core.note import Verifier
from indelible.core.tiles import TILE_HEIGHT, TILE_WIDTH, TileAppender, tiles_for_size
from indelible.errors import (
    ChainError,
    InconsistentTree,
    LeafError,
    TreeError,
    VerificationError,
)
from indelible.storage import open_store
from indelible.storage.base import CheckpointRow, EntryRow, LogInfo, Store

__all__ = ["VerifyReport", "verify_log"]

Progress = Callable[[int, int], None]
_CHUNK = 200 * 256  # tile-aligned ranges
_PARALLEL_FROM = 100_000
_INDEX_NAMES = IndexColumns._fields


@dataclass
class VerifyReport:
    """What a successful verification covered."""

    log: str
    origin: str
    size: int
    checkpoints_checked: int = 0
    latest_checkpoint_size: int | None = None
    held_checkpoint_sizes: list[int] = field(default_factory=list)
    erased_values: int = 0

    @property
    def unpublished(self) -> int:
        """Entries not yet covered by any signed checkpoint (the caveat's window)."""
        return self.size - (self.latest_checkpoint_size or 0)

    def to_dict(self) -> dict[str, object]:
        return {
            "log": self.log,
            "origin": self.origin,
            "size": self.size,
            "checkpoints_checked": self.checkpoints_checked,
            "latest_checkpoint_size": self.latest_checkpoint_size,
            "unpublished": self.unpublished,
            "held_checkpoint_sizes": self.held_checkpoint_sizes,
            "erased_values": self.erased_values,
        }


@dataclass(frozen=True)
class _Range:
    """Step 1's result for one seq range."""

    start: int
    hashes: bytes  # concatenated recomputed leaf hashes
    first_prev: bytes
    erased: int


def check_entries(rows: Iterator[EntryRow], start: int, end: int, tree_hashes: bytes) -> _Range:
    """Step 1 over seqs [start, end): everything one entry can say about itself.

    ``tree_hashes`` are the leaf hashes the stored level-0 tiles hold from ``start`` on: an
    entry whose recomputed hash differs from the tree's is named even when its hash column
    was rewritten to match.
    """
    hashes = bytearray()
    erased = 0
    expected = start
    prev: bytes | None = None
    first_prev = GENESIS_PREV_HASH
    for row in rows:
        if row.seq != expected:
            raise LeafError("entry missing (seqs are not contiguous)", seq=expected)
        computed = hashlib.sha256(b"\x00" + row.leaf).digest()
        if computed != row.leaf_hash:
            raise LeafError(
                "leaf bytes do not match the stored leaf hash",
                seq=expected,
                expected=row.leaf_hash.hex(),
                computed=computed.hex(),
            )
        offset = (expected - start) * 32
        in_tree = tree_hashes[offset : offset + 32]
        if in_tree != computed:
            raise TreeError(
                "entry is not the one the tree holds at this seq"
                if in_tree
                else "entry is not in the tree (no tile holds its hash)",
                seq=expected,
                expected=in_tree.hex() or None,
                computed=computed.hex(),
            )
        entry = _decode(row)
        if entry.seq != expected:
            raise LeafError(f"leaf claims seq {entry.seq}", seq=expected)
        if prev is None:
            first_prev = entry.prev_hash
        elif entry.prev_hash != prev:
            raise ChainError(
                f"prev_hash does not match the leaf hash of seq {expected - 1}",
                seq=expected,
                expected=prev.hex(),
                computed=entry.prev_hash.hex(),
            )
        _check_index(row, index_columns(entry))
        refs = related_refs(entry.event)
        if row.refs != refs:
            raise LeafError(
                "related-record references do not match the leaf",
                seq=expected,
                expected=repr(refs),
                computed=repr(row.refs),
            )
        erased += len(entry.erased)
        hashes += computed
        prev = computed
        expected += 1
    if expected != end:
        raise LeafError("entry missing (seqs are not contiguous)", seq=expected)
    return _Range(start, bytes(hashes), first_prev, erased)


def _tree_hashes(store: Store, log_id: int, start: int, end: int) -> bytes:
    """The level-0 tiles' leaf hashes for [start, end); ``start`` is tile-aligned."""
    first, last = start // TILE_WIDTH, (end + TILE_WIDTH - 1) // TILE_WIDTH
    found = store.get_tiles(log_id, [(0, index) for index in range(first, last)])
    out = bytearray()
    for index in range(first, last):
        tile = found.get((0, index))
        if tile is None:
            break
        out += tile
        if len(tile) < TILE_WIDTH * 32:
            break
    return bytes(out)


def _check_range(store: Store, log_id: int, start: int, end: int) -> _Range:
    tree = _tree_hashes(store, log_id, start, end)
    return check_entries(store.iter_entries(log_id, start, end), start, end, tree)


def _decode(row: EntryRow) -> DecodedEntry:
    try:
        return decode(row.leaf, row.personal, require_canonical=True)
    except VerificationError as exc:
        if exc.seq is None:
            raise LeafError(exc.message, seq=row.seq) from exc
        raise


def _check_index(row: EntryRow, derived: Sequence[object]) -> None:
    if tuple(row.index) == tuple(derived):
        return
    for name, stored, computed in zip(_INDEX_NAMES, row.index, derived, strict=True):
        if stored != computed:
            raise LeafError(
                f"index column {name} does not match the leaf",
                seq=row.seq,
                expected=repr(computed),
                computed=repr(stored),
            )


def _check_range_in_worker(url: str, log_id: int, start: int, end: int) -> _Range:
    store = open_store(url, create=False, migrate=False)
    try:
        return _check_range(store, log_id, start, end)
    finally:
        store.close()


def _ranges(store: Store, log: LogInfo, size: int, workers: int) -> Iterator[_Range]:
    bounds = [(at, min(at + _CHUNK, size)) for at in range(0, size, _CHUNK)]
    if workers <= 1 or size < _PARALLEL_FROM:
        for start, end in bounds:
            yield _check_range(store, log.log_id, start, end)
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = [
            pool.submit(_check_range_in_worker, store.url, log.log_id, start, end)
            for start, end in bounds
        ]
        for future in futures:
            yield future.result()


class _TreeCheck:
    """Step 2: rebuild the tiles and the roots at chosen sizes; compare full tiles as they fill."""

    def __init__(self, store: Store, log: LogInfo, sizes: Sequence[int]) -> None:
        self._store, self._log = store, log
        self._appender = TileAppender(0, {})
        self._wanted = sorted(set(sizes))
        self.roots: dict[int, bytes] = {0: EMPTY_ROOT}
        self._latest: dict[tuple[int, int], bytes] = {}

    def feed(self, hashes: bytes) -> None:
        at = 0
        count = len(hashes) // 32
        while at < count:
            size = self._appender.size
            upto = count
            for wanted in self._wanted:
                if size < wanted <= size + (count - at):
                    upto = min(upto, at + wanted - size)
            batch = [hashes[i * 32 : (i + 1) * 32] for i in range(at, upto)]
            self._compare(self._appender.append(batch))
            at = upto
            if self._appender.size in self._wanted:
                self.roots[self._appender.size] = self._appender.root()

    def _compare(self, changed: dict[tuple[int, int], bytes]) -> None:
        full = [key for key, data in changed.items() if len(data) == TILE_WIDTH * 32]
        stored = self._store.get_tiles(self._log.log_id, full)
        for key in full:
            _same_tile(key, changed[key], stored.get(key))
            self._latest.pop(key, None)
        for key, data in changed.items():
            if len(data) < TILE_WIDTH * 32:
                self._latest[key] = data

    def finish(self) -> None:
        size = self._appender.size
        expected = {(level, index) for level, index, _ in tiles_for_size(size)}
        partial = {key: data for key, data in self._latest.items() if key in expected}
        stored = self._store.get_tiles(self._log.log_id, list(partial))
        for key, data in partial.items():
            _same_tile(key, data, stored.get(key))
        extra = sorted(set(self._store.tile_keys(self._log.log_id)) - expected)
        if extra:
            level, index = extra[0]
            raise TreeError(
                f"the store holds tile level {level} index {index}, which a tree of {size} "
                "entries does not have",
                seq=size,
            )


def _same_tile(key: tuple[int, int], computed: bytes, stored: bytes | None) -> None:
    level, index = key
    if stored == computed:
        return
    first = index * TILE_WIDTH
    if stored is not None:
        for position in range(0, min(len(stored), len(computed)), 32):
            if stored[position : position + 32] != computed[position : position + 32]:
                first += position // 32
                break
        else:
            first += min(len(stored), len(computed)) // 32
    seq = first << (TILE_HEIGHT * level)
    raise TreeError(
        f"stored tile level {level} index {index} does not match the leaves",
        seq=seq,
        expected=None if stored is None else stored[:32].hex(),
        computed=computed[:32].hex(),
    )


def verify_log(
    store: Store,
    log: LogInfo,
    verifier: Verifier,
    *,
    held: Sequence[str] = (),
    workers: int = 1,
    progress: Progress | None = None,
) -> VerifyReport:
    """Verify a whole log (steps in the module docstring); return what was covered."""
    size = store.tree_size(log.log_id)
    report = VerifyReport(log.name, log.origin, size)
    stored = [
        (row, open_checkpoint(row.note, verifier, log.origin)[0])
        for row in store.list_checkpoints(log.log_id)
    ]
    outside = [open_checkpoint(note, verifier, log.origin)[0] for note in held]
    for checkpoint in outside:
        if checkpoint.size > size:
            raise InconsistentTree(
                f"log truncated: a held checkpoint covers {checkpoint.size} entries, "
                f"the log has {size}",
                seq=size,
            )
    sizes = [cp.size for _, cp in stored if cp.size <= size] + [cp.size for cp in outside]
    tree = _TreeCheck(store, log, sizes)
    last_hash = GENESIS_PREV_HASH
    done = 0
    for part in _ranges(store, log, size, workers):
        if part.hashes and part.first_prev != last_hash:
            raise ChainError(
                "prev_hash does not match the previous leaf hash",
                seq=part.start,
                expected=last_hash.hex(),
                computed=part.first_prev.hex(),
            )
        if part.hashes:
            last_hash = part.hashes[-32:]
        tree.feed(part.hashes)
        report.erased_values += part.erased
        done += len(part.hashes) // 32
        if progress is not None:
            progress(done, size)
    tree.finish()
    _check_checkpoints(stored, outside, tree.roots, size, report)
    return report


def _check_checkpoints(
    stored: Sequence[tuple[CheckpointRow, Checkpoint]],
    outside: Sequence[Checkpoint],
    roots: dict[int, bytes],
    size: int,
    report: VerifyReport,
) -> None:
    good = 0
    for row, checkpoint in stored:
        if (checkpoint.size, checkpoint.root) != (row.size, row.root):
            raise TreeError("checkpoint columns do not match its signed note", seq=checkpoint.size)
        if checkpoint.size > size:
            raise InconsistentTree(
                f"log truncated: checkpoint {checkpoint.size} was signed, the log has {size}",
                seq=size,
            )
        _same_root(checkpoint, roots, good)
        good = checkpoint.size
        report.checkpoints_checked += 1
        report.latest_checkpoint_size = checkpoint.size
    for checkpoint in outside:
        _same_root(checkpoint, roots, 0)
        report.held_checkpoint_sizes.append(checkpoint.size)


def _same_root(checkpoint: Checkpoint, roots: dict[int, bytes], since: int) -> None:
    computed = roots.get(checkpoint.size)
    if computed != checkpoint.root:
        raise InconsistentTree(
            f"the log's root at size {checkpoint.size} differs from the signed checkpoint: "
            f"history in seqs {since}..{checkpoint.size - 1} was rewritten",
            seq=since,
            expected=checkpoint.root.hex(),
            computed=None if computed is None else computed.hex(),
        )
