"""Fixtures: a Prefect test server for the session and a small project with stand-in stages."""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path

import pytest
import yaml

# The server-process helpers live with the tracking tests, which start an MLflow server the same way.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tracking"))

PARAMS = {
    "data": {
        "name": "pipetest",
        "classes": [{"name": "water", "color": [0, 0, 255]}, {"name": "background", "color": [0, 0, 0]}],
    },
    "variants": ["decoder_only", "lora"],
    "tracking": {"system_metrics": False},
    "pipeline": {"retries": 2, "retry_delay_seconds": 0},
}


@pytest.fixture(scope="session")
def prefect_server():
    """Flows in these tests run against one temporary Prefect server (its start-up takes a while)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def params_file(tmp_path: Path) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(PARAMS))
    return path


@pytest.fixture
def stage(monkeypatch):
    """``stage("samsar.training.loop", "train_variant", fake)``: replace one stage function.

    Uses the real module when it exists, else a stand-in module (for pieces still being built).
    """

    def replace(module_name: str, attribute: str, fake) -> None:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError:
            module = types.ModuleType(module_name)
            monkeypatch.setitem(sys.modules, module_name, module)
        monkeypatch.setattr(module, attribute, fake, raising=False)

    return replace


TINY_PROJECT = {
    "data": {
        "name": "e2e",
        "classes": [
            {"name": "building", "color": [255, 0, 0]},
            {"name": "water", "color": [0, 0, 255]},
            {"name": "background", "color": [0, 0, 0]},
        ],
        "synthetic": {"n_scenes": 4, "scene_size": 128, "looks": 1, "seed": 0},
    },
    "preprocess": {"tile_size": 64, "stride": 64, "split": {"val": 0.2, "test": 0.2, "block_size": 64, "seed": 0}},
    "model": {"backbone": "tiny", "image_size": 64},
    "pretrain": {"enabled": False},
    "variants": ["decoder_only"],
    "train": {"seeds": [0], "epochs": 1, "max_seconds": None, "batch_size": 4, "warmup_steps": 1,
              "early_stopping_patience": 5},
    "evaluate": {"overlays": 1, "batch_size": 4},
    "tracking": {"system_metrics": False},
    # One epoch of a random-init model cannot beat the majority class: the baseline check is
    # exercised in tests/tracking/test_registry.py, here the flows only need to reach the registry.
    "promotion": {"baseline_margin": -1.0},
    "pipeline": {"retries": 0},
}


@pytest.fixture
def tiny_project(tmp_path: Path) -> Path:
    """A project with a tiny processed synthetic dataset (random-init tiny SAM); returns its params.yaml."""
    from samsar.config import load_params
    from samsar.data.prepare import prepare
    from samsar.data.preprocess import preprocess

    root = tmp_path / "project"
    root.mkdir()
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(TINY_PROJECT))
    params = load_params(path)
    prepare(params)
    preprocess(params)
    return path
