"""results/<variant>.json: the flat, numbers-only headline DVC reads as metrics."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np

from samsar.config import load_params
from samsar.evaluation.headline import HEADLINE_KEYS, headline_metrics, headline_path, write_headline
from samsar.evaluation.metrics import mean_scores
from samsar.tracking.summary import tiles_interval
from samsar.uncertainty import TileConfusions, seed_mean_intervals

REPO_ROOT = Path(__file__).resolve().parents[2]
NAMES = ("a", "b", "c", "bg")


def _tiles(seeds: int = 3, n_tiles: int = 12, seed: int = 0) -> TileConfusions:
    rng = np.random.default_rng(seed)
    truth = rng.integers(50, 200, size=(seeds, n_tiles, 4, 1))
    confusion = np.where(np.eye(4, dtype=bool), truth, rng.integers(0, 30, size=(seeds, n_tiles, 4, 4)))
    confusion[..., 2, :] = 0  # class c is absent from the truth ...
    confusion[..., :, 2] = 0  # ... and never predicted: left out of the means
    return TileConfusions(confusion.astype(np.int64), tuple(range(seeds)), tuple(f"t{i}" for i in range(n_tiles)), NAMES)


def test_intervals_hold_the_seed_mean_and_repeat():
    tiles = _tiles()
    intervals = seed_mean_intervals(tiles, mean_scores, replicates=500)
    assert set(intervals) == set(HEADLINE_KEYS)
    pooled = mean_scores(tiles.confusion.sum(axis=1))  # per-seed scores on all tiles
    for key in HEADLINE_KEYS:
        low, high = intervals[key]
        assert low < float(np.mean(pooled[key])) < high, key
    assert seed_mean_intervals(tiles, mean_scores, replicates=500) == intervals  # deterministic
    single = seed_mean_intervals(_tiles(seeds=1), mean_scores, replicates=200)  # one seed: still the tiles' spread
    assert all(low < high for low, high in single.values())


def test_the_headline_mIoU_interval_is_the_model_summary_one(tmp_path):
    tiles = _tiles()
    headline = headline_metrics({"mIoU": 0.5}, tiles)
    assert tiles_interval(tiles.save(tmp_path / "v.tiles.npz")) == (headline["mIoU_ci_low"], headline["mIoU_ci_high"])
    assert tiles_interval(tmp_path / "missing.tiles.npz") is None


def test_the_headline_is_flat_numeric_and_nan_free():
    tiles = _tiles()
    metrics = {  # what metrics/<variant>.json holds, with the awkward cases
        "mIoU": 0.61, "mIoU_std": 0.02, "mF1": 0.7, "mF1_std": 0.01, "OA": 0.9, "OA_std": 0.0,
        "kappa": None, "kappa_std": float("nan"),  # undefined on this split
        "FWIoU": 0.8, "variant": "lora", "base_id": "abc", "per_class_iou": {"a": 0.5}, "seeds": [0, 1, 2],
        "mF1_reference_description": "text",
        "object_f1": {"ship": 0.5, "small boat": None}, "object_f1_std": {"ship": 0.05, "small boat": None},
        "object_f1_interval": {"ship": {"low": 0.4, "high": 0.6, "confidence": 0.95}, "small boat": None},
        "object_precision": {"ship": 0.6}, "objects": {"ship": {"tp": 3}},
    }
    headline = headline_metrics(metrics, tiles)
    text = json.dumps(headline, allow_nan=False)  # strict JSON: no NaN anywhere
    assert json.loads(text) == headline
    assert all(isinstance(v, float) and math.isfinite(v) for v in headline.values())  # flat: no dict, list, str
    assert set(headline) == {
        "mIoU", "mIoU_std", "mIoU_ci_low", "mIoU_ci_high", "mF1", "mF1_std", "mF1_ci_low", "mF1_ci_high",
        "OA", "OA_std", "OA_ci_low", "OA_ci_high", "kappa_ci_low", "kappa_ci_high",
        "object_f1_ship", "object_f1_ship_std", "object_f1_ship_ci_low", "object_f1_ship_ci_high",
    }
    assert headline["mIoU"] == 0.61 and headline["object_f1_ship_ci_high"] == 0.6
    # Without per-tile confusions or object classes: mean and std only.
    assert set(headline_metrics({"mIoU": 0.5, "mIoU_std": 0.0, "object_f1": {}})) == {"mIoU", "mIoU_std"}


def test_write_headline_puts_it_under_results(tmp_path):
    shutil.copy(REPO_ROOT / "params.yaml", tmp_path / "params.yaml")
    params = load_params(tmp_path / "params.yaml")
    path = write_headline(params, "lora", {"mIoU": 0.5, "mIoU_std": 0.01, "variant": "lora"}, _tiles())
    assert path == headline_path(params, "lora") == tmp_path / "results" / "lora.json"
    assert json.loads(path.read_text())["mIoU"] == 0.5
