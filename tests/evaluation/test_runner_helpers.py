"""Evaluation helpers: majority baseline, overlay tile choice, MLflow keys, figures."""

import numpy as np
import pytest

from samsar.evaluation.metrics import segmentation_metrics
from samsar.evaluation.plots import OverlayTile, plot_confusion, plot_history, plot_overlays
from samsar.evaluation.runner import flat_metrics, majority_confusion, overlay_tile_ids

NAMES = ["a", "b", "bg"]
COLORS = [(255, 0, 0), (0, 255, 0), (0, 0, 0)]


def test_majority_confusion_predicts_the_training_majority_everywhere():
    test_cm = np.array([[5, 1, 0], [2, 3, 0], [0, 0, 9]])
    cm = majority_confusion(test_cm, train_counts=np.array([10, 50, 20]))
    assert cm.tolist() == [[0, 6, 0], [0, 5, 0], [0, 9, 0]]
    # b: 5 / (5 + 20 - 5); a and bg never predicted -> IoU 0
    assert segmentation_metrics(cm, NAMES)["mIoU"] == pytest.approx(0.25 / 3)


def test_overlay_tiles_are_a_fixed_spread_choice():
    ids = [f"t{i:02d}" for i in range(10)]
    chosen = overlay_tile_ids(list(reversed(ids)), 3)
    assert chosen == {"t00", "t04", "t09"} or chosen == {"t00", "t05", "t09"}
    assert overlay_tile_ids(ids, 3) == chosen
    assert overlay_tile_ids(ids, 0) == set()
    assert overlay_tile_ids(ids[:2], 5) == {"t00", "t01"}


def test_flat_metrics_cover_all_forms_and_classes():
    metrics = segmentation_metrics(np.array([[5, 1, 0], [2, 3, 0], [0, 0, 9]]), NAMES, background="bg")
    metrics["majority_mIoU"] = 0.1
    flat = flat_metrics(metrics)
    assert flat["test_mIoU"] == metrics["mIoU"]
    assert flat["test_ignore_background_kappa"] == metrics["ignore_background"]["kappa"]
    assert flat["test_ignore_background_lenient_mIoU"] == metrics["ignore_background_lenient"]["mIoU"]
    assert flat["test_iou_b"] == metrics["per_class_iou"]["b"]
    assert all(isinstance(v, float) for v in flat.values())


def test_figures_are_written_as_png(tmp_path):
    rng = np.random.default_rng(0)
    cm = rng.integers(0, 100, (3, 3))
    paths = [
        plot_confusion(cm, NAMES, tmp_path / "cm.png"),
        plot_confusion(cm, NAMES, tmp_path / "cm_norm.png", normalize=True),
        plot_history([{"epoch": 0, "train_loss": 1.0, "val_mIoU": 0.2}, {"epoch": 1, "train_loss": 0.8, "val_mIoU": 0.3}],
                     tmp_path / "history.png"),
    ]
    truth = rng.integers(0, 3, (16, 16)).astype(np.uint8)
    truth[0, 0] = 255
    tile = OverlayTile("t0", rng.random((3, 16, 16)).astype(np.float32), truth, rng.integers(0, 3, (16, 16)).astype(np.uint8))
    paths.append(plot_overlays([tile], NAMES, COLORS, tmp_path / "overlays.png", ignore_index=255))
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*")), "temporary files left behind"


def test_undefined_metrics_are_written_as_null_not_nan(tmp_path):
    """One class fills the test split: kappa is undefined (NaN from the metrics); metrics files hold null."""
    import json

    from samsar.io import finite_or_none, write_json

    metrics = segmentation_metrics(np.array([[0, 0, 0], [0, 0, 0], [0, 0, 9]]), NAMES)
    assert np.isnan(metrics["kappa"])
    write_json(tmp_path / "m.json", finite_or_none(metrics))

    def refuse(constant):
        raise ValueError(constant)

    written = json.loads((tmp_path / "m.json").read_text(), parse_constant=refuse)
    assert written["kappa"] is None and written["OA"] == 1.0


def test_object_and_boundary_keys_aggregate_over_seeds_and_reach_mlflow():
    from samsar.evaluation.runner import aggregate_over_seeds

    seeds = [{"mBF1": 0.4, "object_f1": {"ship": 0.5, "boat": None}, "boundary_f1": {"water": 0.4},
              "objects": {"ship": {"tp": 2, "missed_by_size": {"small": 1}}}},
             {"mBF1": 0.6, "object_f1": {"ship": 0.7, "boat": None}, "boundary_f1": {"water": 0.6},
              "objects": {"ship": {"tp": 4, "missed_by_size": {"small": 3}}}}]
    out = aggregate_over_seeds(seeds)
    assert out["object_f1"]["ship"] == pytest.approx(0.6) and out["object_f1"]["boat"] is None
    assert out["object_f1_std"]["ship"] == pytest.approx(np.std([0.5, 0.7], ddof=1)) and out["object_f1_std"]["boat"] is None
    assert out["mBF1_std"] == pytest.approx(np.std([0.4, 0.6], ddof=1)) and "boundary_f1_std" in out
    assert out["objects"]["ship"] == {"tp": 3.0, "missed_by_size": {"small": 2.0}}
    metrics = {**segmentation_metrics(np.array([[5, 1, 0], [2, 3, 0], [0, 0, 9]]), NAMES), **out}
    flat = flat_metrics(metrics)
    assert flat["test_object_f1_ship"] == pytest.approx(0.6) and "test_object_f1_boat" not in flat
    assert flat["test_mBF1"] == pytest.approx(0.5) and flat["test_boundary_f1_water"] == pytest.approx(0.5)
