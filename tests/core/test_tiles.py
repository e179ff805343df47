"""C2SP tlog-tiles: paths both ways, the tile set of a size, proofs from tiles, appending."""

from __future__ import annotations

import functools
import hashlib

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from indelible import errors
from indelible.core import merkle
from indelible.core.merkle import (
    consistency_proof,
    inclusion_proof,
    root,
    subtree_root,
    verify_inclusion,
)
from indelible.core.tiles import (
    TILE_HEIGHT,
    TILE_WIDTH,
    TileAppender,
    TileNodes,
    entries_path,
    parse_tile_path,
    tile_path,
    tiles_for_size,
)
from tests import reference_merkle as ref

BIG = 70_000  # crosses into tile level 2, like the tlog-tiles example
LEAVES = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(BIG + 1)]

Tiles = dict[tuple[int, int], bytes]


@functools.cache
def scratch_tiles(size: int) -> Tiles:
    """Every tile of the tree of ``size``, computed directly from the tlog-tiles definition:
    tile (l, n) holds MTH(D[(n*256 + i) * 256**l : (n*256 + i + 1) * 256**l])."""
    out: Tiles = {}
    for level, index, width in tiles_for_size(size):
        span = TILE_WIDTH**level
        first = index * TILE_WIDTH
        out[level, index] = b"".join(
            subtree_root(LEAVES[(first + i) * span : (first + i + 1) * span]) for i in range(width)
        )
    return out


# --- paths ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tile", "path"),
    [
        ((0, 0, 256), "tile/0/000"),
        ((0, 1234067, 256), "tile/0/x001/x234/067"),
        ((1, 1000, 5), "tile/1/x001/000.p/5"),
        ((2, 999, 255), "tile/2/999.p/255"),
        ((63, 2**64 - 1, 256), "tile/63/x018/x446/x744/x073/x709/x551/615"),
    ],
)
def test_tile_path_examples(tile: tuple[int, int, int], path: str) -> None:
    assert tile_path(*tile) == path
    assert parse_tile_path(path) == tile
    if tile[2] == TILE_WIDTH:
        assert tile_path(*tile[:2]) == path


def test_entries_path_examples() -> None:
    assert entries_path(1234067) == "tile/entries/x001/x234/067"
    assert entries_path(7, 3) == "tile/entries/007.p/3"
    assert parse_tile_path("tile/entries/007.p/3") == (-1, 7, 3)


@given(st.integers(-1, 63), st.integers(0, 2**64 - 1), st.integers(1, TILE_WIDTH))
def test_format_then_parse(level: int, index: int, width: int) -> None:
    path = entries_path(index, width) if level == -1 else tile_path(level, index, width)
    assert parse_tile_path(path) == (level, index, width)


NEAR_CANONICAL = r"tile/(entries|[0-9]{1,2})(/x[0-9]{3}){0,3}/[0-9]{3}(\.p/[0-9]{1,3})?"
LOOSE = r"tile/(entries|[0-9x]{1,3})(/x?[0-9]{1,4}){1,4}(\.p/[0-9]{1,4})?"


@given(
    st.from_regex(NEAR_CANONICAL, fullmatch=True)
    | st.from_regex(LOOSE, fullmatch=True)
    | st.text(max_size=30)
)
def test_parse_accepts_only_canonical_paths(path: str) -> None:
    try:
        level, index, width = parse_tile_path(path)
    except errors.FormatError:
        return
    formatted = entries_path(index, width) if level == -1 else tile_path(level, index, width)
    assert formatted == path


@pytest.mark.parametrize(
    "path",
    [
        "", "tile", "tile/0", "tiles/0/000", "/tile/0/000", "tile/0/000/", "tile//000",
        "tile/00/000", "tile/01/000", "tile/64/000", "tile/-1/000", "tile/+1/000", "tile/x/000",
        "tile/0/00", "tile/0/0000", "tile/0/x000/001", "tile/0/001/x002", "tile/0/x1/001",
        "tile/0/y001/001", "tile/0/x001/x002", "tile/0/x00a/001", "tile/0/\u0661\u0662\u0663",
        "tile/0/000.p/0", "tile/0/000.p/256", "tile/0/000.p/01", "tile/0/000.p", "tile/0/000.p/",
        "tile/0/000.p/5/6", "tile/0/x001.p/5", "tile/entries/000.p/x",
        "tile/0/x018/x446/x744/x073/x709/x551/616", "tile/0/000 ",
    ],
)  # fmt: skip
def test_malformed_paths_are_rejected(path: str) -> None:
    with pytest.raises(errors.FormatError):
        parse_tile_path(path)


@pytest.mark.parametrize(
    "args",
    [(-1, 0), (64, 0), (0, -1), (0, 2**64), (0, 0, 0), (0, 0, 257)],
    ids=["level-negative", "level-64", "index-negative", "index-2^64", "width-0", "width-257"],
)
def test_tile_path_rejects_bad_coordinates(args: tuple[int, ...]) -> None:
    with pytest.raises(errors.InputError):
        tile_path(*args)


def test_entries_path_rejects_bad_coordinates() -> None:
    with pytest.raises(errors.InputError):
        entries_path(0, 300)


# --- which tiles exist ----------------------------------------------------------------------


def test_tiles_for_size_follows_the_spec_examples() -> None:
    # tlog-tiles: 273 full level 0 tiles, a level 0 partial of width 112, one full level 1
    # tile, a level 1 partial of width 17 and a level 2 partial of width 1.
    want = [(0, i, 256) for i in range(273)] + [(0, 273, 112), (1, 0, 256), (1, 1, 17)]
    assert tiles_for_size(70_000) == [*want, (2, 0, 1)]
    assert tiles_for_size(256) == [(0, 0, 256), (1, 0, 1)]
    assert tiles_for_size(0) == []
    assert tiles_for_size(1) == [(0, 0, 1)]


@given(st.integers(0, 10**6))
def test_tiles_for_size_counts(size: int) -> None:
    tiles = tiles_for_size(size)
    for level in range(8):
        widths = sum(w for lv, _, w in tiles if lv == level)
        assert widths == size >> (TILE_HEIGHT * level)


def test_tiles_for_size_rejects_negative() -> None:
    with pytest.raises(errors.InputError):
        tiles_for_size(-1)


# --- reading nodes from tiles ---------------------------------------------------------------


def tile_nodes(size: int, reads: list[tuple[int, int]] | None = None) -> TileNodes:
    tiles = scratch_tiles(size)
    log = [] if reads is None else reads

    def get_tile(level: int, index: int) -> bytes:
        log.append((level, index))
        return tiles[level, index]

    return TileNodes(get_tile, size)


@settings(deadline=None, max_examples=60)
@given(st.integers(1, 700), st.data())
def test_tile_backed_proofs_match_reference(size: int, data: st.DataObject) -> None:
    index = data.draw(st.integers(0, size - 1), label="index")
    old = data.draw(st.integers(1, size), label="old")
    reads: list[tuple[int, int]] = []
    nodes = tile_nodes(size, reads)
    assert nodes.size == size
    assert root(size, nodes.get_node) == ref.mth(LEAVES[:size])
    assert inclusion_proof(index, size, nodes.get_node) == ref.path(index, LEAVES[:size])
    assert consistency_proof(old, size, nodes.get_node) == ref.proof(old, LEAVES[:size])
    assert len(reads) == len(set(reads))  # each tile fetched once


@pytest.mark.parametrize(("index", "old"), [(0, 1), (65_535, 65_536), (69_999, 69_999)])
def test_tile_backed_proofs_across_level_two(index: int, old: int) -> None:
    nodes = tile_nodes(BIG)
    tree = LEAVES[:BIG]
    assert inclusion_proof(index, BIG, nodes.get_node) == ref.path(index, tree)
    assert consistency_proof(old, BIG, nodes.get_node) == ref.proof(old, tree)
    assert root(BIG, nodes.get_node) == subtree_root(tree)


def test_tile_nodes_accept_a_longer_tile_than_the_size_needs() -> None:
    grown = scratch_tiles(300)
    nodes = TileNodes(lambda level, index: grown[level, index], 260)
    assert root(260, nodes.get_node) == subtree_root(LEAVES[:260])


@pytest.mark.parametrize(
    ("tile", "message"),
    [(b"\x00" * 64, "tile is 64 bytes, need 3 hashes"), (b"\x00" * 97, "97 bytes")],
    ids=["short", "ragged"],
)
def test_tile_nodes_reject_bad_tiles(tile: bytes, message: str) -> None:
    nodes = TileNodes(lambda level, index: tile, 3)
    with pytest.raises(errors.TreeError, match=message):
        nodes.get_node(0, 0)


@pytest.mark.parametrize("node", [(0, 3), (2, 0), (-1, 0), (0, -1)])
def test_tile_nodes_refuse_nodes_outside_the_tree(node: tuple[int, int]) -> None:
    with pytest.raises(errors.InputError, match="not a complete subtree"):
        tile_nodes(3).get_node(*node)


def test_tile_nodes_reject_negative_size() -> None:
    with pytest.raises(errors.InputError):
        TileNodes(lambda level, index: b"", -1)


# --- appending ------------------------------------------------------------------------------


def append_all(batches: list[int], start: int = 0) -> tuple[TileAppender, Tiles]:
    written = dict(scratch_tiles(start))
    appender = TileAppender(start, {k: written[k] for k in TileAppender.right_edge(start)})
    size = start
    for count in batches:
        changed = appender.append(LEAVES[size : size + count])
        size += count
        assert all(len(t) % 32 == 0 and 0 < len(t) <= 8192 for t in changed.values())
        written.update(changed)
    return appender, written


@settings(deadline=None, max_examples=60)
@given(st.integers(0, 600), st.lists(st.integers(0, 300), max_size=6))
@example(256, [1]).via("resume with an empty level-0 partial")
def test_appended_tiles_equal_tiles_from_scratch(start: int, batches: list[int]) -> None:
    appender, written = append_all(batches, start)
    size = start + sum(batches)
    assert appender.size == size
    assert written == scratch_tiles(size)
    assert appender.root() == ref.mth(LEAVES[:size])


def test_appending_across_level_two_in_batches() -> None:
    batches = [1, 254, 1, 1000, 64_280, 1, 4463]
    appender, written = append_all(batches)
    assert sum(batches) == BIG
    assert written == scratch_tiles(BIG)
    assert appender.root() == subtree_root(LEAVES[:BIG])
    resumed, written = append_all([BIG - 65_536], 65_536)
    assert written == scratch_tiles(BIG)
    assert resumed.root() == appender.root()


def test_one_batch_reports_each_changed_tile_once() -> None:
    appender, _ = append_all([250])
    changed = appender.append(LEAVES[250:600])
    assert sorted(changed) == [(0, 0), (0, 1), (0, 2), (1, 0)]
    assert [len(changed[k]) // 32 for k in sorted(changed)] == [256, 256, 88, 2]
    assert appender.append([]) == {}


def test_right_edge_names_the_partial_tiles() -> None:
    assert TileAppender.right_edge(0) == []
    assert TileAppender.right_edge(256) == [(1, 0)]
    assert TileAppender.right_edge(70_000) == [(0, 273), (1, 1), (2, 0)]
    assert TileAppender.right_edge(65_536) == [(2, 0)]


def test_appender_proofs_verify_against_its_root() -> None:
    appender, written = append_all([777])
    nodes = TileNodes(lambda level, index: written[level, index], 777)
    proof = inclusion_proof(500, 777, nodes.get_node)
    verify_inclusion(LEAVES[500], 500, 777, proof, appender.root())


def test_appender_resumes_from_a_longer_stored_tile() -> None:
    grown = scratch_tiles(300)
    appender = TileAppender(260, {(0, 1): grown[0, 1], (1, 0): grown[1, 0]})
    written = dict(scratch_tiles(260))
    written.update(appender.append(LEAVES[260:300]))
    assert written == grown


@pytest.mark.parametrize(
    ("tiles", "message"),
    [
        ({(0, 1): b"\x00" * 160}, "tile/0/000.p/5: tile is missing"),
        ({(0, 0): b"\x00" * 32}, "need 5 hashes"),
        ({(0, 0): b"\x00" * 8193}, "8193 bytes"),
    ],
    ids=["missing", "short", "too-long"],
)
def test_appender_rejects_a_bad_right_edge(tiles: Tiles, message: str) -> None:
    with pytest.raises(errors.TreeError, match=message):
        TileAppender(5, tiles)


def test_appender_rejects_bad_leaf_hashes() -> None:
    with pytest.raises(errors.InputError):
        TileAppender(0, {}).append([b"short"])


def test_a_shared_full_tile_cache_gives_the_same_proofs_as_growing_trees_change() -> None:
    """Full tiles are immutable, so a cache shared across tree sizes must never go stale."""
    shared: dict[tuple[int, int], list[list[bytes]]] = {}
    stored: dict[tuple[int, int], bytes] = {}
    appender = TileAppender(0, {})
    leaves = [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(70_000)]
    at = 0
    for size in (1, 255, 256, 257, 600, 65_536, 65_537, 70_000):
        stored.update(appender.append(leaves[at:size]))
        at = size
        cached = TileNodes(lambda level, index: stored[(level, index)], size, shared)
        plain = TileNodes(lambda level, index: stored[(level, index)], size)
        for index in {0, size // 3, size // 2, size - 1}:
            assert merkle.inclusion_proof(index, size, cached.get_node) == merkle.inclusion_proof(
                index, size, plain.get_node
            )
        assert merkle.root(size, cached.get_node) == merkle.root(size, plain.get_node)
        assert all(len(levels[0]) == 256 for levels in shared.values())
