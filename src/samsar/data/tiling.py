"""Which tiles to cut from the raw items, and which split each belongs to.

- ``files`` layout (synthetic scenes, folders, FUSAR-Map): whole files are assigned to splits, so
  no two splits share a source image; every file is cut into tiles.
- ``scene`` layout (one large scene): the scene is divided into a grid of equal spatial blocks
  of at least ``preprocess.split.block_size`` pixels, assigned to splits; a tile is kept only if every block it
  touches belongs to the same split (tiles straddling splits are dropped), so no pixel of a test
  tile lies in a training tile even with ``stride < tile_size``.

Tiles step by ``stride``; the last tile of a row or column is flush with the edge. An item
smaller than a tile gives one tile that preprocessing pads (zeros / ignore index).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from samsar.config import Params
from samsar.data.errors import DataError
from samsar.data.labels import LabelDecoder
from samsar.data.pairs import PairReader
from samsar.data.raw_index import INDEX_NAME, RawIndex, RawItem
from samsar.data.splits import assign_splits


@dataclass(frozen=True)
class TileSpec:
    """One tile: its item, the window it covers inside the item (unpadded) and its split."""

    item: RawItem
    row: int
    col: int
    height: int
    width: int
    split: str

    @property
    def tile_id(self) -> str:
        return f"{self.item.id}_r{self.row:05d}_c{self.col:05d}"


@dataclass(frozen=True)
class TilePlan:
    """All tiles, plus notes worth telling the user (padding, dropped tiles)."""

    tiles: list[TileSpec]
    notes: list[str]


def plan_tiles(params: Params, index: RawIndex, decoder: LabelDecoder) -> TilePlan:
    """Tiles and splits for the raw index, per the params' tile size, stride and split settings."""
    tile, stride = params.preprocess.tile_size, params.preprocess.stride
    if stride <= 0 or tile <= 0:
        raise DataError(f"preprocess.tile_size ({tile}) and preprocess.stride ({stride}) must be positive")
    if not index.items:
        raise DataError(
            f"{params.raw_dir / INDEX_NAME}: the raw index lists no items; run `samsar prepare` on a source with data"
        )
    notes = [
        f"{item.image}: {item.height}x{item.width} is smaller than the {tile}px tile; padded with zeros (label: ignore index)"
        for item in index.items
        if item.height < tile or item.width < tile
    ]
    if index.layout == "scene":
        tiles, scene_notes = _plan_scene(params, index.items, decoder)
        notes += scene_notes
    else:
        tiles = _plan_files(params, index.items)
    return TilePlan(tiles, notes)


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Start offsets of windows covering ``[0, length)``.

    Windows step by ``stride``; the last one is flush with the end so no window hangs over
    the edge. An axis shorter than the window gets a single window at 0 (the caller pads).
    """
    if length <= 0 or window <= 0 or stride <= 0:
        raise ValueError(f"length, window and stride must be positive, got {length}, {window}, {stride}")
    if length <= window:
        return [0]
    starts = list(range(0, length - window, stride))
    starts.append(length - window)
    return starts


def _item_windows(item: RawItem, tile: int, stride: int):
    for row in window_starts(item.height, tile, stride):
        for col in window_starts(item.width, tile, stride):
            yield row, col, min(tile, item.height - row), min(tile, item.width - col)


def _plan_files(params: Params, items: list[RawItem]) -> list[TileSpec]:
    names = params.data.class_names
    presence = np.array([[item.class_counts.get(name, 0) > 0 for name in names] for item in items])
    # A source's test set is final; its training set is still free to give up validation files.
    fixed = [item.split if item.split == "test" else None for item in items]
    splits = assign_splits(presence, params.preprocess.split, "image", fixed=fixed)
    tile, stride = params.preprocess.tile_size, params.preprocess.stride
    return [
        TileSpec(item, *window, split)
        for item, split in zip(items, splits)
        for window in _item_windows(item, tile, stride)
    ]


def _plan_scene(params: Params, items: list[RawItem], decoder: LabelDecoder) -> tuple[list[TileSpec], list[str]]:
    tile, stride = params.preprocess.tile_size, params.preprocess.stride
    block = params.preprocess.split.block_size
    if block < tile:
        raise DataError(
            f"preprocess.split.block_size ({block}) is smaller than preprocess.tile_size ({tile}); "
            "every tile would straddle blocks; use a block size of at least the tile size"
        )
    tiles: list[TileSpec] = []
    notes: list[str] = []
    for item in items:
        row_edges, col_edges = block_edges(item.height, block), block_edges(item.width, block)
        presence = _block_presence(item, row_edges, col_edges, decoder, tuple(params.data.nodata))
        grid = (len(row_edges) - 1, len(col_edges) - 1)
        block_split = np.array(assign_splits(presence, params.preprocess.split, "spatial block")).reshape(grid)
        dropped = 0
        for row, col, height, width in _item_windows(item, tile, stride):
            rows = slice(_block_of(row_edges, row), _block_of(row_edges, row + height - 1) + 1)
            cols = slice(_block_of(col_edges, col), _block_of(col_edges, col + width - 1) + 1)
            touched = block_split[rows, cols]
            if (touched == touched.flat[0]).all():
                tiles.append(TileSpec(item, row, col, height, width, str(touched.flat[0])))
            else:
                dropped += 1
        counts = {s: int((block_split == s).sum()) for s in ("train", "val", "test")}
        notes.append(
            f"{item.image}: {grid[0]}x{grid[1]} spatial blocks of at least {block}px -> {counts}; "
            f"{dropped} tile(s) straddling two splits dropped"
        )
    return tiles, notes


def block_edges(length: int, block: int) -> np.ndarray:
    """Edges of ``length // block`` (at least 1) equal blocks along an axis of ``length`` pixels.

    Blocks are at least ``block`` pixels (so at least a tile) wide; equal blocks avoid a thin
    remainder block at the far edge that no tile could fit in.
    """
    n = max(1, length // block)
    return np.linspace(0, length, n + 1).round().astype(int)


def _block_of(edges: np.ndarray, pixel: int) -> int:
    return int(np.searchsorted(edges, pixel, side="right")) - 1


def _block_presence(
    item: RawItem, row_edges: np.ndarray, col_edges: np.ndarray, decoder: LabelDecoder, nodata: tuple[float, ...] = ()
) -> np.ndarray:
    """``(n_blocks, n_classes)``: which classes occur in each block (row-major) outside the image nodata, read block by block."""
    num_classes = len(decoder.class_names)
    blocks = [(r0, r1, c0, c1) for r0, r1 in zip(row_edges, row_edges[1:]) for c0, c1 in zip(col_edges, col_edges[1:])]
    presence = np.zeros((len(blocks), num_classes), dtype=bool)
    with PairReader(item.image, item.label, decoder, nodata, item.bands) as pair:
        for b, (r0, r1, c0, c1) in enumerate(blocks):
            _, valid = pair.read_image(r0, c0, r1 - r0, c1 - c0)
            values = np.unique(pair.read_classes(r0, c0, r1 - r0, c1 - c0, valid))
            presence[b, values[values < num_classes]] = True
    return presence
