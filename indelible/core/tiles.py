"""The Merkle tree as C2SP tlog-tiles: tile paths, tile sets, proofs from tiles, appending.

A tile at level ``L``, index ``N`` holds the hashes of tree level ``8 * L`` nodes
``N * 256 ... N * 256 + width - 1``, 32 bytes each, concatenated (tlog-tiles "Merkle Tree").
A full tile is 256 hashes wide; the rightmost tile of a level may be partial (1 to 255 hashes,
tlog-tiles "Partial Tiles"), and only full tiles are hashed into the level above.

Nothing here reads or writes storage: :class:`TileNodes` takes a ``get_tile`` function and
:class:`TileAppender` returns the tiles to write.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping, Sequence

from indelible import errors
from indelible.core.merkle import HASH_SIZE, TreeBuilder, pair_hashes, subtree_root

__all__ = [
    "TILE_HEIGHT",
    "TILE_WIDTH",
    "TileAppender",
    "TileNodes",
    "entries_path",
    "parse_tile_path",
    "tile_path",
    "tiles_for_size",
]

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
_TILE_BYTES = TILE_WIDTH * HASH_SIZE
_MAX_LEVEL = 63  # tlog-tiles: <L> is between 0 and 63
_INDEX_LIMIT = 1 << 64
_ENTRIES = "entries"


# --- paths (tlog-tiles "Merkle Tree" and "Log entries") --------------------------------------


def _check_coordinates(index: int, width: int) -> None:
    if not 0 <= index < _INDEX_LIMIT:
        raise errors.InputError(f"tile index {index} is out of range")
    if not 1 <= width <= TILE_WIDTH:
        raise errors.InputError(f"tile width {width} is not between 1 and {TILE_WIDTH}")


def _encode(index: int, width: int) -> str:
    """``<N>[.p/<W>]``: 3-digit groups, all but the last prefixed with ``x``."""
    groups = [f"{index % 1000:03d}"]
    while index >= 1000:
        index //= 1000
        groups.append(f"x{index % 1000:03d}")
    suffix = "" if width == TILE_WIDTH else f".p/{width}"
    return "/".join(reversed(groups)) + suffix


def tile_path(level: int, index: int, width: int = TILE_WIDTH) -> str:
    """``tile/<L>/<N>[.p/<W>]``, e.g. ``tile_path(0, 1234067)`` is ``tile/0/x001/x234/067``."""
    if not 0 <= level <= _MAX_LEVEL:
        raise errors.InputError(f"tile level {level} is not between 0 and {_MAX_LEVEL}")
    _check_coordinates(index, width)
    return f"tile/{level}/{_encode(index, width)}"


def entries_path(index: int, width: int = TILE_WIDTH) -> str:
    """``tile/entries/<N>[.p/<W>]``: the entry bundle matching level-0 tile ``index``."""
    _check_coordinates(index, width)
    return f"tile/{_ENTRIES}/{_encode(index, width)}"


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _parse_decimal(text: str, low: int, high: int, what: str, path: str) -> int:
    """A decimal ASCII integer with no leading zeros, within ``[low, high]``."""
    if not _digits(text) or (text[0] == "0" and text != "0") or not low <= int(text) <= high:
        raise errors.FormatError(f"bad tile {what} {text!r} in {path!r}")
    return int(text)


def _parse_index(groups: Sequence[str], path: str) -> int:
    """``<N>``: ``x``-prefixed 3-digit groups, then one bare 3-digit group; no zero lead."""
    *upper, last = groups
    if not all(g[:1] == "x" and len(g) == 4 and _digits(g[1:]) for g in upper) or not (
        len(last) == 3 and _digits(last)
    ):
        raise errors.FormatError(f"bad tile index in {path!r}")
    if upper and upper[0] == "x000":
        raise errors.FormatError(f"tile index has a leading zero group in {path!r}")
    index = int("".join(g[1:] for g in upper) + last)
    if index >= _INDEX_LIMIT:
        raise errors.FormatError(f"tile index is out of range in {path!r}")
    return index


def parse_tile_path(path: str) -> tuple[int, int, int]:
    """``(level, index, width)`` of a tile path; level is -1 for an entry bundle.

    Strict: only the exact form :func:`tile_path` / :func:`entries_path` produce is accepted,
    anything else raises :class:`~indelible.errors.FormatError`.
    """
    parts = path.split("/")
    if len(parts) < 3 or parts[0] != "tile":
        raise errors.FormatError(f"not a tile path: {path!r}")
    is_entries = parts[1] == _ENTRIES
    level = -1 if is_entries else _parse_decimal(parts[1], 0, _MAX_LEVEL, "level", path)
    groups, width = parts[2:], TILE_WIDTH
    if len(groups) > 1 and groups[-2].endswith(".p"):
        width = _parse_decimal(groups[-1], 1, TILE_WIDTH - 1, "width", path)
        groups = [*groups[:-2], groups[-2][:-2]]
    return level, _parse_index(groups, path), width


# --- which tiles exist ----------------------------------------------------------------------


def _level_widths(size: int) -> list[tuple[int, int, int]]:
    """Per tile level: (level, full tile count, partial width or 0), bottom up."""
    if size < 0:
        raise errors.InputError(f"tree size must be >= 0, got {size}")
    out: list[tuple[int, int, int]] = []
    level = 0
    while size >> (TILE_HEIGHT * level):
        full, width = divmod(size >> (TILE_HEIGHT * level), TILE_WIDTH)
        out.append((level, full, width))
        level += 1
    return out


def tiles_for_size(size: int) -> list[tuple[int, int, int]]:
    """Every ``(level, index, width)`` tile of a tree of ``size`` leaves, level by level.

    tlog-tiles "Partial Tiles": level ``l`` has ``floor(size / 256**(l+1))`` full tiles and a
    partial one of width ``floor(size / 256**l) mod 256`` when that is not zero.
    """
    out: list[tuple[int, int, int]] = []
    for level, full, width in _level_widths(size):
        out.extend((level, index, TILE_WIDTH) for index in range(full))
        if width:
            out.append((level, full, width))
    return out


def _split(data: bytes) -> list[bytes]:
    return [data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]


def _checked_tile(data: bytes | None, level: int, index: int, width: int) -> bytes:
    """``data`` cut to ``width`` hashes; a longer stored tile (the tree grew) is a prefix."""
    where = tile_path(level, index, width)
    if data is None:
        raise errors.TreeError(f"{where}: tile is missing")
    if len(data) % HASH_SIZE or not width * HASH_SIZE <= len(data) <= _TILE_BYTES:
        raise errors.TreeError(f"{where}: tile is {len(data)} bytes, need {width} hashes")
    return data[: width * HASH_SIZE]


# --- reading nodes from tiles ---------------------------------------------------------------


class TileNodes:
    """Node hashes of the tree of ``size`` read from its tiles; a merkle ``NodeGetter``.

    ``get_tile(level, index)`` returns the stored hashes of that tile, full or partial. Each
    tile is fetched at most once per object. Nodes between tile levels are hashed from the
    tile below (tlog-tiles: "reconstructed by hashing the leaves"), once per tile, so many
    proofs from one object share the work.

    ``full_tiles``, when given, is shared between objects (for any tree size): a full tile
    never changes, so its hashes by height are kept there and reused by later proofs.
    """

    __slots__ = ("_full", "_get_tile", "_inner", "_size", "_tiles")

    def __init__(
        self,
        get_tile: Callable[[int, int], bytes],
        size: int,
        full_tiles: MutableMapping[tuple[int, int], list[list[bytes]]] | None = None,
    ) -> None:
        if size < 0:
            raise errors.InputError(f"tree size must be >= 0, got {size}")
        self._get_tile = get_tile
        self._size = size
        self._full = full_tiles
        self._tiles: dict[tuple[int, int], bytes] = {}
        self._inner: dict[tuple[int, int], list[list[bytes]]] = {}

    @property
    def size(self) -> int:
        """The tree size the nodes are read for."""
        return self._size

    def get_node(self, level: int, index: int) -> bytes:
        """Hash of the perfect subtree of height ``level`` starting at leaf ``index << level``."""
        if level < 0 or index < 0 or (index + 1) << level > self._size:
            raise errors.InputError(
                f"node ({level}, {index}) is not a complete subtree of tree size {self._size}"
            )
        tile_level, height = divmod(level, TILE_HEIGHT)
        tile_index, offset = divmod(index << height, TILE_WIDTH)
        if height == 0 and self._full is None:
            return self._tile(tile_level, tile_index)[offset * HASH_SIZE : (offset + 1) * HASH_SIZE]
        return self._levels(tile_level, tile_index)[height][offset >> height]

    def _levels(self, level: int, index: int) -> list[list[bytes]]:
        """The tree inside a tile, by height: all 255 interior hashes of a full tile, once."""
        key = (level, index)
        levels = self._inner.get(key)
        if levels is None and self._full is not None:
            levels = self._full.get(key)
        if levels is None:
            levels = [_split(self._tile(level, index))]
            while len(levels) < TILE_HEIGHT:
                levels.append(pair_hashes(levels[-1]))
            if self._full is not None and len(levels[0]) == TILE_WIDTH:
                self._full[key] = levels
                self._tiles.pop(key, None)
                return levels  # kept by the shared cache only: this object stays small
        self._inner[key] = levels
        return levels

    def _tile(self, level: int, index: int) -> bytes:
        tile = self._tiles.get((level, index))
        if tile is None:
            nodes = self._size >> (TILE_HEIGHT * level)
            width = TILE_WIDTH if index < nodes >> TILE_HEIGHT else nodes % TILE_WIDTH
            tile = _checked_tile(self._get_tile(level, index), level, index, width)
            self._tiles[(level, index)] = tile
        return tile


# --- appending ------------------------------------------------------------------------------


def _range_of_partial(hashes: bytes) -> list[bytes]:
    """The perfect subtrees of a partial tile's hashes, left to right (largest first)."""
    nodes: list[bytes] = []
    width, offset = len(hashes) // HASH_SIZE, 0
    for height in range(TILE_HEIGHT - 1, -1, -1):
        if width >> height & 1:
            chunk = hashes[offset * HASH_SIZE : (offset + (1 << height)) * HASH_SIZE]
            nodes.append(subtree_root(_split(chunk)))
            offset += 1 << height
    return nodes


class TileAppender:
    """The right edge of the tiled tree: appends leaf hashes and returns the changed tiles.

    It keeps the partial tile of each level and the tree's compact range, so an append costs
    one hash per new node plus O(log n), whatever the tree size.
    """

    __slots__ = ("_builder", "_partials")

    @staticmethod
    def right_edge(size: int) -> list[tuple[int, int]]:
        """The ``(level, index)`` tiles to load to resume a tree of ``size``: its partials."""
        return [(level, full) for level, full, width in _level_widths(size) if width]

    def __init__(self, size: int, tiles: Mapping[tuple[int, int], bytes]) -> None:
        """Resume at ``size`` from the tiles named by :meth:`right_edge` (others are ignored)."""
        self._partials: list[bytes] = []  # by tile level; b"" when that level has no partial
        nodes: list[bytes] = []
        for level, full, width in reversed(_level_widths(size)):
            partial = b""
            if width:
                partial = _checked_tile(tiles.get((level, full)), level, full, width)
                nodes.extend(_range_of_partial(partial))
            self._partials.insert(0, partial)
        self._builder = TreeBuilder.from_compact_range(size, nodes)

    @property
    def size(self) -> int:
        """Number of leaves in the tree."""
        return self._builder.size

    def root(self) -> bytes:
        """Root hash at the current size."""
        return self._builder.root()

    def append(self, leaf_hashes: Sequence[bytes]) -> dict[tuple[int, int], bytes]:
        """Append leaf hashes; return each changed tile's full new content by (level, index)."""
        old_size = self._builder.size
        created = self._builder.extend_collect(leaf_hashes, TILE_HEIGHT)
        changed: dict[tuple[int, int], bytes] = {}
        for height, nodes in created.items():
            level = height // TILE_HEIGHT
            first = (old_size >> height) // TILE_WIDTH
            changed.update(self._grow(level, first, b"".join(nodes)))
        return changed

    def _grow(self, level: int, first: int, new: bytes) -> dict[tuple[int, int], bytes]:
        """Add ``new`` hashes to the level's partial tile, which has index ``first``."""
        if level == len(self._partials):
            self._partials.append(b"")
        data = self._partials[level] + new
        tail = len(data) % _TILE_BYTES
        self._partials[level] = data[len(data) - tail :]
        return {
            (level, first + n): data[offset : offset + _TILE_BYTES]
            for n, offset in enumerate(range(0, len(data), _TILE_BYTES))
        }
