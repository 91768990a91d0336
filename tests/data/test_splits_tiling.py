"""Split assignment and tiling: stratified, seeded, and leak-free for single scenes."""

import json

import numpy as np
import pandas as pd
import pytest
from data_helpers import write_png, write_tiff
from PIL import Image

from samsar.config import SplitConfig
from samsar.data.errors import DataError
from samsar.data.prepare import prepare
from samsar.data.preprocess import preprocess
from samsar.data.splits import assign_splits
from samsar.data.tiling import block_edges, window_starts


def test_assignment_is_seeded_and_proportional():
    presence = np.ones((40, 3), dtype=bool)
    cfg = SplitConfig(val=0.25, test=0.25, seed=3)
    splits = assign_splits(presence, cfg, "image")
    assert splits == assign_splits(presence, cfg, "image")
    assert splits != assign_splits(presence, SplitConfig(val=0.25, test=0.25, seed=4), "image")
    assert {s: splits.count(s) for s in ("train", "val", "test")} == {"train": 20, "val": 10, "test": 10}


def test_rare_class_units_are_spread_over_splits_starting_with_train():
    presence = np.zeros((20, 2), dtype=bool)
    presence[:, 0] = True
    presence[:4, 1] = True  # class 1 occurs in 4 units only
    splits = assign_splits(presence, SplitConfig(val=0.25, test=0.25, seed=0), "image")
    rare = [splits[i] for i in range(4)]
    assert "train" in rare and "test" in rare


def test_every_required_split_gets_a_unit_even_when_rounding_says_no():
    splits = assign_splits(np.ones((3, 1), dtype=bool), SplitConfig(val=0.1, test=0.1), "image")
    assert sorted(splits) == ["test", "train", "val"]


def test_block_edges_are_equal_and_at_least_the_block_size():
    edges = block_edges(900, 256)
    assert edges.tolist() == [0, 300, 600, 900]
    assert block_edges(100, 256).tolist() == [0, 100]


@pytest.fixture
def scene_params(tmp_path, params_factory):
    rng = np.random.default_rng(0)
    height, width = 600, 700
    label = ((np.arange(height)[:, None] // 50 + np.arange(width)[None, :] // 70) % 4).astype(np.uint8) + 1
    label[:40, :40] = 0  # unlabelled corner
    image = rng.exponential(label.astype(np.float32))
    write_tiff(tmp_path / "scene.tif", image.astype(np.float32))
    write_png(tmp_path / "scene_label.png", label)
    return params_factory(
        data={
            "source": "scene",
            "classes": [{"name": n, "color": [i, i, i]} for i, n in enumerate(["a", "b", "c", "d"])],
            "background": None,
            "scene": {
                "image": str(tmp_path / "scene.tif"),
                "label": str(tmp_path / "scene_label.png"),
                "ignore_values": [0],
                "label_offset": 1,
            },
        },
        preprocess={"tile_size": 100, "stride": 50, "split": {"val": 0.2, "test": 0.2, "block_size": 200, "seed": 0}},
    )


def test_scene_tiles_never_share_a_pixel_across_splits(scene_params):
    prepare(scene_params)
    manifest = pd.read_parquet(preprocess(scene_params))
    assert set(manifest["split"]) == {"train", "val", "test"}
    coverage = {}
    for split, rows in manifest.groupby("split"):
        mask = np.zeros((600, 700), dtype=bool)
        for r in rows.itertuples():
            mask[r.row_off : r.row_off + r.height, r.col_off : r.col_off + r.width] = True
        coverage[split] = mask
    assert not (coverage["test"] & coverage["train"]).any()
    assert not (coverage["val"] & coverage["train"]).any()
    assert not (coverage["test"] & coverage["val"]).any()
    # stride < tile: neighbouring training tiles overlap each other, which is allowed
    assert manifest.loc[manifest["split"] == "train", ["row_off", "col_off"]].diff().abs().min().min() == 0
    notes = json.loads((scene_params.processed_dir / "dataset.json").read_text())["notes"]
    assert any("straddling" in n for n in notes)


def test_scene_labels_are_mapped_by_offset_with_ignore(scene_params):
    prepare(scene_params)
    manifest = pd.read_parquet(preprocess(scene_params))
    row = manifest.sort_values(["row_off", "col_off"]).iloc[0]  # the tile nearest the unlabelled corner
    label = np.asarray(Image.open(scene_params.processed_dir / row["label_path"]))
    source = np.asarray(Image.open(scene_params.data.scene.label))[
        row["row_off"] : row["row_off"] + 100, row["col_off"] : row["col_off"] + 100
    ]
    expected = np.where(source == 0, 255, source.astype(int) - 1)
    assert np.array_equal(label, expected)
    assert row["count_ignore"] == (source == 0).sum()


def test_small_image_is_padded_to_a_full_tile(tmp_path, params_factory):
    for i in range(3):
        write_tiff(tmp_path / "f" / "images" / f"s{i}.tif", np.full((40, 50), 2.0, np.float32))
        write_png(tmp_path / "f" / "masks" / f"s{i}.png", np.ones((40, 50), np.uint8))
    params = params_factory(
        data={
            "source": "folder",
            "classes": [{"name": "x", "color": [0, 0, 0]}, {"name": "y", "color": [1, 1, 1]}],
            "background": None,
            "folder": {"root": str(tmp_path / "f"), "mask_mode": "index"},
        },
        preprocess={"tile_size": 64, "stride": 64, "split": {"val": 0.3, "test": 0.3, "seed": 0}},
    )
    prepare(params)
    manifest = pd.read_parquet(preprocess(params))
    row = manifest.iloc[0]
    assert (row["height"], row["width"]) == (40, 50)
    assert row["count_y"] == 40 * 50 and row["count_ignore"] == 64 * 64 - 40 * 50
    image = np.load(params.processed_dir / row["image_path"])
    assert image.shape == (3, 64, 64) and (image[:, 40:, :] == 0).all() and (image[:, :, 50:] == 0).all()
    notes = json.loads((params.processed_dir / "dataset.json").read_text())["notes"]
    assert any("padded" in n for n in notes)


@pytest.mark.parametrize("length,window,stride", [(500, 64, 48), (300, 64, 48), (64, 64, 48), (65, 64, 48), (1000, 256, 192), (257, 256, 1)])
def test_windows_cover_every_pixel_and_stay_inside(length, window, stride):
    starts = window_starts(length, window, stride)
    covered = np.zeros(length, dtype=int)
    for s in starts:
        assert 0 <= s and s + window <= length
        covered[s : s + window] += 1
    assert covered.min() >= 1
    assert starts[-1] == length - window
    assert all(0 < b - a <= stride for a, b in zip(starts, starts[1:]))


def test_axis_shorter_than_window_gets_one_window_at_zero():
    assert window_starts(37, 64, 48) == [0]


def _paired_classes(n_classes: int = 7) -> np.ndarray:
    """A Flevoland-like block layout: a background class everywhere, and each other class in
    exactly two neighbouring blocks (block 2c-2 and 2c-1 for class c)."""
    presence = np.zeros((2 * n_classes, n_classes + 1), dtype=bool)
    presence[:, 0] = True
    for c in range(1, n_classes + 1):
        presence[[2 * c - 2, 2 * c - 1], c] = True
    return presence


def _classes_missing_from_train(presence: np.ndarray, splits: list[str], split: str) -> np.ndarray:
    units = np.array(splits)
    return np.flatnonzero(presence[units == split].any(axis=0) & ~presence[units == "train"].any(axis=0))


def test_random_split_leaves_a_test_class_out_of_train_for_every_seed_and_stratified_does_not():
    presence = _paired_classes()
    for seed in range(20):
        random = assign_splits(presence, SplitConfig(val=0.25, test=0.25, seed=seed), "spatial block")
        assert len(_classes_missing_from_train(presence, random, "test")) > 0, f"seed {seed}"

        stratified = assign_splits(presence, SplitConfig(val=0.25, test=0.25, seed=seed, mode="stratified"), "spatial block")
        assert len(stratified) == len(presence) and set(stratified) == {"train", "val", "test"}  # one split per block
        assert len(_classes_missing_from_train(presence, stratified, "test")) == 0, f"seed {seed}"
        assert len(_classes_missing_from_train(presence, stratified, "val")) == 0, f"seed {seed}"
        # the evaluation splits still hold the rare classes, not only the background
        assert presence[np.array(stratified) == "test", 1:].any()
        assert stratified.count("train") == 7


def test_stratified_split_respects_a_fixed_test_set_and_covers_its_classes():
    presence = _paired_classes(3)  # 6 units; the last one's test split is fixed by the source
    fixed = [None] * 5 + ["test"]
    splits = assign_splits(presence, SplitConfig(val=0.2, test=0.2, mode="stratified"), "image", fixed=fixed)
    assert splits[5] == "test" and "val" in splits
    assert len(_classes_missing_from_train(presence, splits, "test")) == 0


def test_stratified_split_does_not_give_a_class_s_only_training_block_away():
    presence = np.eye(3, dtype=bool)[[0, 1, 2, 0]]  # three classes, only class 0 twice
    with pytest.raises(DataError, match="every class one in train .* lower preprocess.split.block_size"):
        assign_splits(presence, SplitConfig(val=0.2, test=0.2, mode="stratified"), "spatial block")
    # the random split fills every split by giving classes away
    assert sorted(assign_splits(presence, SplitConfig(val=0.2, test=0.2), "spatial block")) == ["test", "train", "train", "val"]
