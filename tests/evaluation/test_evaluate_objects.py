"""`samsar evaluate` on the tiny synthetic project: object and boundary scores in metrics/<variant>.json,
the model card and the comparison."""

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest


def _training_conftest():
    name = "evaluation_training_conftest"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).parents[1] / "training" / "conftest.py")
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


tiny_processed = _training_conftest().tiny_processed  # the tiny synthetic dataset of tests/training
tiny_project = _training_conftest().tiny_project


def _no_nan(value) -> bool:
    if isinstance(value, dict):
        return all(_no_nan(v) for v in value.values())
    if isinstance(value, list):
        return all(_no_nan(v) for v in value)
    return not (isinstance(value, float) and math.isnan(value))


def test_evaluate_writes_object_and_boundary_metrics(tiny_project):
    from samsar.evaluation.runner import evaluate_variant, seeds_path
    from samsar.reporting.card import write_card
    from samsar.reporting.comparison import write_comparison
    from samsar.training.loop import train_variant

    params = tiny_project({"train": {"epochs": 1, "seeds": [0]},  # one seed trains in-process: seconds
                           "evaluate": {"object_classes": ["building"], "boundary_tolerance": 1}})
    train_variant(params, "decoder_only")
    evaluate_variant(params, "decoder_only")
    text = params.metrics_path("decoder_only").read_text()
    assert "NaN" not in text
    metrics = json.loads(text)
    assert _no_nan(metrics)
    for key in ("object_precision", "object_recall", "object_f1", "object_mean_iou"):
        assert set(metrics[key]) == {"building"} and set(metrics[f"{key}_std"]) == {"building"}
    building = metrics["objects"]["building"]
    assert building["n_true_objects"] > 0  # the synthetic scenes have buildings
    assert building["n_true_objects"] == building["tp"] + building["fn"]
    assert sum(building["missed_by_size"].values()) == pytest.approx(building["fn"])
    assert sum(building["false_by_size"].values()) == pytest.approx(building["fp"])
    per_seed = json.loads(seeds_path(params, "decoder_only").read_text())["seeds"]
    assert [s["object_f1"]["building"] for s in per_seed] == [metrics["object_f1"]["building"]]
    assert metrics["object_f1_std"]["building"] in (0.0, None)
    assert metrics["object_iou_threshold"] == 0.5 and metrics["boundary_tolerance"] == 1
    assert set(metrics["object_size_buckets"]) == {"small", "medium", "large"}
    # land cover: every other non-background class gets boundary F1
    assert set(metrics["boundary_f1"]) == {"vegetation", "water", "road"}
    defined = [v for v in metrics["boundary_f1"].values() if v is not None]
    assert defined and all(0 <= v <= 1 for v in defined) and metrics["mBF1"] is not None and "mBF1_std" in metrics
    assert "object_f1_interval" in metrics and set(metrics["object_f1_interval"]) == {"building"}

    card = write_card(params, "decoder_only").read_text()
    assert "### Objects" in card and "| building |" in card and "### Boundaries" in card
    comparison = write_comparison(params).read_text()
    assert "building object F1" in comparison and "mBF1" in comparison
