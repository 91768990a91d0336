"""TileDataset and DatasetInfo over a small processed synthetic dataset."""

import numpy as np
import pandas as pd
import pytest
import torch
from data_helpers import write_params
from torch.utils.data import DataLoader

from samsar.config import load_params
from samsar.data.dataset import DatasetInfo, TileDataset
from samsar.data.prepare import prepare
from samsar.data.preprocess import preprocess


@pytest.fixture(scope="module")
def processed_dir(tmp_path_factory):
    params = load_params(
        write_params(
            tmp_path_factory.mktemp("ds"),
            data={"synthetic": {"n_scenes": 5, "scene_size": 128, "seed": 0}},
            preprocess={"tile_size": 64, "stride": 64},
        )
    )
    prepare(params)
    preprocess(params)
    return params.processed_dir


def test_dataset_info_reads_dataset_json(processed_dir):
    info = DatasetInfo.load(processed_dir)
    assert info.class_names == ["building", "vegetation", "water", "road", "background"]
    assert info.colors[0] == (255, 0, 0) and info.ignore_index == 255 and info.background == "background"
    assert info.tile_size == 64 and info.num_classes == 5 and info.scaler.channels == 1


def test_items_match_the_manifest(processed_dir):
    manifest = pd.read_parquet(processed_dir / "manifest.parquet")
    for split in ("train", "val", "test"):
        assert len(TileDataset(processed_dir, split)) == (manifest["split"] == split).sum()
    ds = TileDataset(processed_dir, "train")
    item = ds[0]
    assert item["image"].dtype == torch.float32 and item["image"].shape == (3, 64, 64)
    assert item["label"].dtype == torch.int64 and item["label"].shape == (64, 64)
    assert 0 <= item["image"].min() and item["image"].max() <= 1
    row = ds.frame.iloc[0]
    assert item["tile_id"] == row["tile_id"]
    assert np.array_equal(item["image"].numpy(), np.load(processed_dir / row["image_path"]))
    counts = ds.class_pixel_counts()
    assert counts.shape == (5,) and counts.sum() == len(ds) * 64 * 64 - ds.frame["count_ignore"].sum()
    batch = next(iter(DataLoader(ds, batch_size=2)))
    assert batch["image"].shape == (2, 3, 64, 64) and batch["label"].shape == (2, 64, 64)
