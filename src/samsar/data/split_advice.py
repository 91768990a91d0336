"""Which ``preprocess.split`` settings would work for the measured class layout (``validate``'s advice).

When the split leaves a test class out of train (or a split empty), :func:`split_advice` rebuilds
the class layout from the manifest (each tile's window and class counts; from the raw index, if
readable, the scene sizes, the per-file class counts and the source's fixed test files) and reruns
:func:`samsar.data.splits.assign_splits` with preprocessing's block/tile rule over candidate
settings, most like the current ones first: at the current block size ``mode: stratified`` and
other seeds, then smaller block sizes (multiples of the tile size); halved val/test shares only
when nothing works with the current ones.
A setting works when every required split gets tiles and every class of the test tiles occurs in
the training tiles. A block's classes are taken from the tiles touching it, so for blocks that do
not follow the tile grid, and for tiles the current run dropped or skipped, the result is an
estimate that ``validate`` confirms after preprocessing again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from samsar.config import Params, SplitConfig
from samsar.data.errors import DataError
from samsar.data.raw_index import RawIndex
from samsar.data.splits import SPLITS, assign_splits, required_splits
from samsar.data.tiling import block_edges

RANDOM_SEEDS = 20  # seeds tried for mode random
STRATIFIED_SEEDS = 5  # seeds tried for mode stratified (the seed only breaks ties there)
MAX_BLOCK_MULTIPLE = 8  # block sizes tried below the current one: tile_size x 1..8
MAX_OPTIONS = 3  # settings named in the advice
_FIELDS = ("mode", "block_size", "seed", "val", "test")


@dataclass
class _Item:
    """One scene's tiles: windows ``(n, 4)`` as row, col, height, width, and tile indices."""

    height: int
    width: int
    tiles: np.ndarray
    windows: np.ndarray


@dataclass
class ClassLayout:
    """What the split sees of the data: per-tile class presence, grouped into files or scenes."""

    layout: str  # "files" or "scene"
    tile_presence: np.ndarray  # (n_tiles, n_classes) bools
    unit_presence: np.ndarray | None = None  # files: (n_files, n_classes)
    fixed: list[str | None] = field(default_factory=list)  # files: split fixed by the source
    tile_unit: np.ndarray | None = None  # files: unit index per tile (-1: file not in the raw index)
    items: list[_Item] = field(default_factory=list)  # scene layout
    _scene_cache: dict = field(default_factory=dict)

    @classmethod
    def from_manifest(cls, manifest: pd.DataFrame, params: Params) -> "ClassLayout":
        names = params.data.class_names
        presence = manifest[[f"count_{n}" for n in names]].to_numpy() > 0
        sources = manifest["source_file"].astype(str).to_numpy()
        index = _raw_index(params)
        by_path = {str(item.image): item for item in index.items} if index is not None else {}
        layout = index.layout if index is not None else ("scene" if len(set(sources)) == 1 else "files")
        if layout == "files":
            if by_path and set(sources) <= set(by_path):
                items = index.items
                unit_presence = np.array([[item.class_counts.get(n, 0) > 0 for n in names] for item in items], bool)
                fixed = [item.split if item.split == "test" else None for item in items]
                position = {str(item.image): i for i, item in enumerate(items)}
            else:  # no raw index: the files that gave tiles, in manifest order
                order = list(dict.fromkeys(sources))
                position = {path: i for i, path in enumerate(order)}
                unit_presence = np.zeros((len(order), len(names)), bool)
                np.logical_or.at(unit_presence, [position[s] for s in sources], presence)
                fixed = [None] * len(order)
            tile_unit = np.array([position[s] for s in sources], dtype=int)
            return cls("files", presence, unit_presence.reshape(-1, len(names)), fixed, tile_unit)
        windows = manifest[["row_off", "col_off", "height", "width"]].to_numpy(dtype=int)
        items = []
        for path in dict.fromkeys(sources):
            rows = np.flatnonzero(sources == path)
            item = by_path.get(path)
            height = item.height if item else int((windows[rows, 0] + windows[rows, 2]).max())
            width = item.width if item else int((windows[rows, 1] + windows[rows, 3]).max())
            items.append(_Item(height, width, rows, windows[rows]))
        return cls("scene", presence, items=items)

    def outcome(self, cfg: SplitConfig) -> dict[str, np.ndarray] | None:
        """Per split, which classes its tiles hold under ``cfg`` (None where the split itself fails)."""
        tile_split = np.full(len(self.tile_presence), -1)
        try:
            if self.layout == "files":
                splits = np.array([SPLITS.index(s) for s in assign_splits(self.unit_presence, cfg, "image", self.fixed)])
                tile_split = splits[self.tile_unit]
            else:
                for item, (presence, corners) in zip(self.items, self._scene_blocks(cfg.block_size)):
                    blocks = np.array([SPLITS.index(s) for s in assign_splits(presence, cfg, "spatial block")])
                    at_corners = blocks[corners]
                    kept = (at_corners == at_corners[:, :1]).all(axis=1)  # tiles straddling two splits are dropped
                    tile_split[item.tiles[kept]] = at_corners[kept, 0]
        except DataError:
            return None
        return {s: self.tile_presence[tile_split == k] for k, s in enumerate(SPLITS)}

    def _scene_blocks(self, block: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per scene: block class presence ``(n_blocks, n_classes)`` and each tile's four corner blocks."""
        if block not in self._scene_cache:
            result = []
            for item in self.items:
                row_edges, col_edges = block_edges(item.height, block), block_edges(item.width, block)
                n_cols = len(col_edges) - 1
                row, col, height, width = item.windows.T

                def block_of(edges: np.ndarray, pixel: np.ndarray) -> np.ndarray:
                    return np.clip(np.searchsorted(edges, pixel, side="right") - 1, 0, len(edges) - 2)

                r0, r1 = block_of(row_edges, row), block_of(row_edges, row + height - 1)
                c0, c1 = block_of(col_edges, col), block_of(col_edges, col + width - 1)
                corners = np.stack([r0 * n_cols + c0, r0 * n_cols + c1, r1 * n_cols + c0, r1 * n_cols + c1], axis=1)
                presence = np.zeros(((len(row_edges) - 1) * n_cols, self.tile_presence.shape[1]), bool)
                for k in range(4):  # a block at least a tile wide: a tile touches at most 2 x 2 blocks
                    np.logical_or.at(presence, corners[:, k], self.tile_presence[item.tiles])
                result.append((presence, corners))
            self._scene_cache[block] = result
        return self._scene_cache[block]


def works(layout: ClassLayout, cfg: SplitConfig) -> bool:
    """Whether ``cfg`` gives every required split tiles and every test class a training tile."""
    held = layout.outcome(cfg)
    if held is None or any(len(held[s]) == 0 for s in required_splits(cfg)):
        return False
    return not (held["test"].any(axis=0) & ~held["train"].any(axis=0)).any()


def candidates(current: SplitConfig, tile_size: int, scene: bool) -> list[list[list[SplitConfig]]]:
    """Settings to try, most like ``current`` first: per val/test shares (the current ones, then
    halved), groups of one block size and mode (stratified, then random), each group a list of seeds."""
    blocks = [current.block_size]
    if scene:
        smaller = {tile_size * m for m in range(1, MAX_BLOCK_MULTIPLE + 1)} | {max(tile_size, current.block_size // 2)}
        blocks += sorted((b for b in smaller if tile_size <= b < current.block_size), reverse=True)
    shares = [(current.val, current.test)]
    halved = (round(current.val / 2, 2) if current.val else 0.0, max(0.05, round(current.test / 2, 2)))
    if halved != shares[0]:
        shares.append(halved)
    levels = []
    for val, test in shares:
        groups = []
        for block in blocks:
            for mode, n_seeds in (("stratified", STRATIFIED_SEEDS), ("random", RANDOM_SEEDS)):
                seeds = [current.seed] + [s for s in range(n_seeds) if s != current.seed]
                group = [SplitConfig(val=val, test=test, block_size=block, seed=seed, mode=mode) for seed in seeds]
                groups.append([cfg for cfg in group if cfg != current])
        levels.append([g for g in groups if g])
    return levels


def working_settings(layout: ClassLayout, current: SplitConfig, tile_size: int) -> list[SplitConfig]:
    """Up to :data:`MAX_OPTIONS` settings that work, the first seed that works in each group; other
    shares only when none works with the current ones."""
    for level in candidates(current, tile_size, layout.layout == "scene"):
        found = []
        for group in level:
            cfg = next((cfg for cfg in group if works(layout, cfg)), None)
            if cfg is not None:
                found.append(cfg)
                if len(found) == MAX_OPTIONS:
                    break
        if found:
            return found
    return []


def describe(cfg: SplitConfig, current: SplitConfig, scene: bool) -> str:
    """The fields of ``cfg`` that differ from ``current``, as ``preprocess.split`` settings."""
    changed = [f"{name}: {getattr(cfg, name)}" for name in _FIELDS
               if getattr(cfg, name) != getattr(current, name) and (scene or name != "block_size")]
    return "{" + ", ".join(changed) + "}"


def split_advice(manifest: pd.DataFrame, params: Params, missing: list[str]) -> str:
    """One line: the ``preprocess.split`` settings that would put every test class in train (and
    give each split tiles) for this class layout, or what to do when none would. ``missing``: the
    test classes absent from train, named in the fallback."""
    split, tile = params.preprocess.split, params.preprocess.tile_size
    columns = ["source_file", "row_off", "col_off", "height", "width"]
    if not set(columns) <= set(manifest.columns) or manifest.empty or manifest[columns].isna().any().any():
        return "try preprocess.split.mode: stratified, or a smaller preprocess.split.block_size"
    layout = ClassLayout.from_manifest(manifest, params)
    scene = layout.layout == "scene"
    found = working_settings(layout, split, tile)
    if found:
        options = "; or ".join(f"preprocess.split {describe(cfg, split, scene)}" for cfg in found)
        return f"settings that work for this class layout (simulated from the manifest): {options}"
    tried = f"block sizes {tile}-{split.block_size} px, " if scene else ""
    lacking = f" holding {', '.join(repr(n) for n in missing)}" if missing else ""
    return (f"no preprocess.split setting tried ({tried}modes stratified and random, seeds, smaller val/test shares) "
            f"works for this class layout; add labelled data{lacking}"
            + (", or lower preprocess.tile_size" if scene else ""))


def _raw_index(params: Params) -> RawIndex | None:
    try:
        return RawIndex.load(params.raw_dir)
    except (DataError, OSError, TypeError, ValueError):
        return None
