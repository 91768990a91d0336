"""The data hash a run records depends on the processed data's content, not on the checkout it sits in
(`samsar promote` compares it between champion and challenger)."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
from samsar.data.prepare import prepare
from samsar.data.preprocess import preprocess, tile_hash
from samsar.tracking.provenance import data_hash


def test_the_same_data_in_another_checkout_hashes_the_same(tiny_project, tiny_processed, tmp_path):
    first = tiny_project()  # on the shared dataset, made in another project folder
    other = tiny_project({"data": {"processed_dir": "data/processed"}}, root=tmp_path / "another" / "clone")
    prepare(other)
    preprocess(other)
    manifests = [pd.read_parquet(p.processed_dir / "manifest.parquet") for p in (first, other)]
    assert first.root != other.root  # two checkouts; the manifest names sources relative to each
    assert manifests[0]["source_file"].iloc[0] == manifests[1]["source_file"].iloc[0]
    assert data_hash(first) == data_hash(other)
    assert data_hash(first)[1] == "content"

    moved = tiny_project({"data": {"processed_dir": str(tmp_path / "moved_data")}}, root=tmp_path / "moved")
    shutil.copytree(tiny_processed, moved.processed_dir)  # the dataset folder copied elsewhere
    assert data_hash(moved) == data_hash(first)

    manifest = pd.read_parquet(moved.processed_dir / "manifest.parquet")  # one tile changes
    manifest.loc[0, "sha256"] = tile_hash(np.ones((3, 4, 4), np.float32), np.zeros((4, 4), np.uint8))
    manifest.to_parquet(moved.processed_dir / "manifest.parquet", index=False)
    assert data_hash(moved) != data_hash(first)
