"""A tiny synthetic project (64 px tiles, random-init tiny SAM) shared by the training tests.

The processed dataset is generated once per session; every test gets its own project root
(outputs, checkpoints) whose params point at that shared dataset.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from samsar.config import Params, load_params

TINY_PARAMS = {
    "seed": 0,
    "data": {
        "name": "tiny",
        "classes": [
            {"name": "building", "color": [255, 0, 0]},
            {"name": "vegetation", "color": [0, 255, 0]},
            {"name": "water", "color": [0, 0, 255]},
            {"name": "road", "color": [255, 255, 0]},
            {"name": "background", "color": [0, 0, 0]},
        ],
        "synthetic": {"n_scenes": 5, "scene_size": 128, "looks": 1, "seed": 0},
    },
    "preprocess": {"tile_size": 64, "stride": 64, "split": {"val": 0.2, "test": 0.2, "block_size": 64, "seed": 0}},
    "model": {"backbone": "tiny", "image_size": 64},
    "pretrain": {"enabled": False},
    "variants": ["decoder_only", "lora"],
    "train": {"seeds": [0], "epochs": 2, "max_seconds": None, "batch_size": 4, "warmup_steps": 2, "checkpoint_every": 2,
              "early_stopping_patience": 10},
    "evaluate": {"overlays": 2, "batch_size": 4},
    "tracking": {"enabled": False},
}


def deep_merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def write_params(root: Path, overrides: dict | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(deep_merge(TINY_PARAMS, overrides or {})))
    return path


@pytest.fixture(scope="session")
def tiny_processed(tmp_path_factory) -> Path:
    """``data/processed`` of the tiny synthetic dataset (generated once)."""
    from samsar.data.prepare import prepare
    from samsar.data.preprocess import preprocess

    root = tmp_path_factory.mktemp("tiny_data")
    params = load_params(write_params(root))
    prepare(params)
    preprocess(params)
    return params.processed_dir


@pytest.fixture()
def tiny_project(tmp_path, tiny_processed):
    """Factory: ``tiny_project(overrides) -> Params`` for a fresh project root on the shared dataset."""

    def make(overrides: dict | None = None, root: Path | None = None) -> Params:
        extra = deep_merge({"data": {"processed_dir": str(tiny_processed)}}, overrides or {})
        return load_params(write_params(root or tmp_path / "project", extra))

    return make
