"""Boundary F1 of land-cover classes: boundary pixels matched within a pixel tolerance."""

import numpy as np
import pytest

from samsar.evaluation.boundaries import boundary_metrics, mean_boundary_f1

NAMES = ["water", "field"]


def _edge(col: int) -> np.ndarray:
    """Water left of column ``col``, field right of it (20 x 20)."""
    label = np.ones((20, 20), dtype=np.uint8)
    label[:, :col] = 0
    return label


def test_a_vertical_edge_shifted_by_one_pixel_is_right_within_tolerance_only():
    truth, pred = _edge(10), _edge(11)
    within = boundary_metrics([(truth, pred)], NAMES, NAMES, tolerance=2)
    assert within["water"]["f1"] == within["field"]["f1"] == 1.0
    exact = boundary_metrics([(truth, pred)], NAMES, NAMES, tolerance=0)
    assert exact["water"]["f1"] < 1 and exact["field"]["f1"] < 1
    assert exact["water"]["f1"] == 0.0  # each side's boundary moved by one pixel: no pixel coincides
    assert mean_boundary_f1(within) == 1.0
    assert boundary_metrics([(truth, truth)], NAMES, NAMES, tolerance=0)["water"]["f1"] == 1.0


def test_a_three_pixel_shift_fails_tolerance_two_and_counts_sum_over_tiles():
    truth, pred = _edge(10), _edge(13)
    assert boundary_metrics([(truth, pred)], NAMES, ["water"], tolerance=2)["water"]["precision"] == 0.0
    assert boundary_metrics([(truth, pred)], NAMES, ["water"], tolerance=3)["water"]["precision"] == 1.0  # all 20
    # one perfect tile and one 3-px shifted tile: half the boundary pixels match
    water = boundary_metrics([(truth, truth), (truth, pred)], NAMES, ["water"], tolerance=2)["water"]
    assert water["precision"] == water["recall"] == water["f1"] == pytest.approx(0.5)
    assert water["n_true_boundary"] == 40 and "field" not in boundary_metrics([(truth, pred)], NAMES, ["water"])


def test_ignore_pixels_make_no_boundary_and_absent_classes_are_undefined():
    truth = np.zeros((20, 20), dtype=np.uint8)
    truth[:, 12:] = 255  # unlabelled right part: its edge is no water boundary
    pred = np.zeros_like(truth)
    pred[:, 15:] = 1  # field predicted only under the unlabelled part
    scores = boundary_metrics([(truth, pred)], NAMES, NAMES, ignore_index=255)
    assert scores["water"]["n_true_boundary"] == 0 and scores["water"]["n_predicted_boundary"] == 0
    assert scores["water"]["f1"] is None and scores["field"]["f1"] is None
    assert mean_boundary_f1(scores) is None
    # boundaries on one side only score 0 (not undefined)
    assert boundary_metrics([(np.zeros((8, 8), np.uint8), _edge(4)[:8, :8])], NAMES, NAMES)["water"]["f1"] == 0.0
