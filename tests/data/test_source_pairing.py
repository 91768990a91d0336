"""Pairing images with labels by name (never by sorted order) and the FUSAR-Map layout end to end."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from data_helpers import FUSAR1_CLASSES, rgb_mask, write_png, write_tiff

from samsar.data.errors import DataError
from samsar.data.prepare import prepare
from samsar.data.preprocess import preprocess
from samsar.data.sources import pair_folder, pair_key
from samsar.data.validate import validate


def test_pair_key_tolerates_role_suffixes():
    assert pair_key(Path("GF3_0001_SAR.tif")) == pair_key(Path("GF3_0001_Lab.tif")) == "GF3_0001"
    assert pair_key(Path("P0001_600.jpg")) == pair_key(Path("P0001_600.png")) == "P0001_600"


def test_pairs_follow_names_not_sorted_order(tmp_path):
    # Sorted, the images are [a, a_b] but the masks [a_b_mask, a_mask]: zipping sorted lists would mismatch.
    for name in ("a.png", "a_b.png"):
        write_png(tmp_path / "images" / name, np.zeros((4, 4), np.uint8))
    for name in ("a_mask.png", "a_b_mask.png"):
        write_png(tmp_path / "masks" / name, np.zeros((4, 4), np.uint8))
    pairs = {p.id: (p.image.name, p.label.name) for p in pair_folder(tmp_path / "images", tmp_path / "masks")}
    assert pairs == {"a": ("a.png", "a_mask.png"), "a_b": ("a_b.png", "a_b_mask.png")}


def _fusar_folder(root, n_train=5, n_test=2, size=64, extra_color=None):
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        for i in range(n):
            index = (np.arange(size * size).reshape(size, size) // (size * size // 5 + 1)).astype(np.uint8)
            index = np.roll(index, 5 * i, axis=1)
            mask = rgb_mask(index, FUSAR1_CLASSES)
            if extra_color is not None and split == "train" and i == 1:
                mask[:3, :4] = extra_color
            write_tiff(
                root / "SAR" / split / f"GF3_{split}_{i:03d}_SAR.tif", rng.exponential(1 + index).astype(np.float32)
            )
            write_png(root / "LAB" / split / f"GF3_{split}_{i:03d}_Lab.png", mask)
    return root


def test_fusar_map_layout_runs_through_all_stages(tmp_path, params_factory):
    root = _fusar_folder(tmp_path / "fusar")
    params = params_factory(
        data={"source": "fusar_map", "fusar_map": {"root": str(root), "version": 1}},
        preprocess={"tile_size": 32, "stride": 32},
    )
    index = json.loads(prepare(params).read_text())
    assert {item["split"] for item in index["items"]} == {"train", "test"}
    assert all(len(item["image_sha256"]) == 64 for item in index["items"])
    manifest = pd.read_parquet(preprocess(params))
    # The FUSAR-Map test set stays the test set; validation is carved out of its training set.
    test_sources = set(manifest.loc[manifest["split"] == "test", "source_file"])
    assert test_sources and all("/SAR/test/" in s for s in test_sources)
    assert (manifest["split"] == "val").any()
    assert validate(params).ok


def test_fusar_map_stray_colour_is_reported_not_class_zero(tmp_path, params_factory):
    root = _fusar_folder(tmp_path / "fusar", extra_color=(178, 34, 34))
    params = params_factory(data={"source": "fusar_map", "fusar_map": {"root": str(root), "version": 1}})
    with pytest.raises(DataError) as err:
        prepare(params)
    assert "GF3_train_001_Lab.png" in str(err.value) and "(178, 34, 34) (12 px)" in str(err.value)
