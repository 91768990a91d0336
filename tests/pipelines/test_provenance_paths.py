"""The same data in two checkouts at different paths: same manifest, same data hash."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml
from conftest import TINY_PROJECT


def _processed(root: Path):
    from samsar.config import load_params
    from samsar.data.prepare import prepare
    from samsar.data.preprocess import preprocess

    root.mkdir(parents=True)
    (root / "params.yaml").write_text(yaml.safe_dump(TINY_PROJECT))
    params = load_params(root / "params.yaml")
    prepare(params)
    preprocess(params)
    return params


def test_two_clones_give_the_same_manifest_and_data_hash(tmp_path):
    from samsar.tracking.provenance import data_hash

    one, two = _processed(tmp_path / "clone-a"), _processed(tmp_path / "deeper" / "clone-b")
    sources = pd.read_parquet(one.processed_dir / "manifest.parquet")["source_file"]
    assert all(not Path(s).is_absolute() and s.startswith("data/raw/images/") for s in sources)
    assert sources.tolist() == pd.read_parquet(two.processed_dir / "manifest.parquet")["source_file"].tolist()
    assert data_hash(one) == data_hash(two) and data_hash(one)[1] == "content"
