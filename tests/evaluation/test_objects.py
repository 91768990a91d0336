"""Object-level metrics: connected components matched one-to-one by IoU >= 0.5."""

import numpy as np
import pytest

from samsar.evaluation.objects import match_objects, object_metrics

NAMES = ["background", "ship"]


def _tile():
    """Truth: ships A (rows 2-5, cols 2-5) and B (rows 10-13, cols 10-13). Prediction: A slightly
    larger (IoU 16/20), B missed, a false ship at rows 2-3, cols 12-14."""
    truth = np.zeros((16, 16), dtype=np.int64)
    truth[2:6, 2:6] = 1
    truth[10:14, 10:14] = 1
    pred = np.zeros_like(truth)
    pred[2:6, 2:7] = 1
    pred[2:4, 12:15] = 1
    return truth, pred


def test_one_found_one_missed_one_false_positive():
    truth, pred = _tile()
    found = match_objects(truth == 1, pred == 1)
    assert (found["tp"], found["fp"], found["fn"]) == (1, 1, 1)
    assert found["matched_ious"] == pytest.approx([16 / 20])
    ship = object_metrics([(truth, pred)], NAMES, background="background")["ship"]
    assert ship["precision"] == ship["recall"] == ship["f1"] == pytest.approx(0.5)
    assert ship["mean_matched_iou"] == pytest.approx(0.8)
    assert (ship["n_true_objects"], ship["n_predicted_objects"]) == (2, 2)
    assert "background" not in object_metrics([(truth, pred)], NAMES, background="background")


def test_two_ships_merged_into_one_blob_match_at_most_one():
    truth = np.zeros((12, 12), dtype=np.int64)
    truth[2:6, 2:5] = 1
    truth[2:6, 6:9] = 1  # two ships one column apart
    merged = np.zeros_like(truth)
    merged[2:6, 2:9] = 1  # one blob covering both: IoU 12/28 with each, below 0.5
    assert (lambda f: (f["tp"], f["fp"], f["fn"]))(match_objects(truth == 1, merged == 1)) == (0, 1, 2)
    wider = np.zeros_like(truth)
    wider[2:6, 2:6] = 1  # touches the gap only: matches the first ship (IoU 12/16), not the second
    assert (lambda f: (f["tp"], f["fp"], f["fn"]))(match_objects(truth == 1, wider == 1)) == (1, 0, 1)


def test_diagonal_pixels_are_one_object_and_matching_is_one_to_one():
    truth = np.zeros((8, 8), dtype=bool)
    truth[1, 1] = truth[2, 2] = True  # 8-connected: one object
    assert match_objects(truth, truth) == {"tp": 1, "fp": 0, "fn": 0, "matched_ious": [1.0]}
    pred = np.zeros((8, 8), dtype=bool)
    pred[1, 1] = True  # IoU 0.5 with the object: counts (>= 0.5)
    assert match_objects(truth, pred)["tp"] == 1


def test_counts_sum_over_tiles_and_ignore_pixels_are_dropped():
    truth, pred = _tile()
    empty = np.zeros_like(truth)
    ignored = truth.copy()
    ignored[:, 10:] = 255  # hides the false positive and ship B
    ship = object_metrics([(truth, pred), (empty, empty), (ignored, pred)], NAMES,
                          background="background", ignore_index=255)["ship"]
    assert (ship["tp"], ship["fp"], ship["fn"]) == (2, 1, 1)
    nothing = object_metrics([(empty, empty)], NAMES, background="background")["ship"]
    assert nothing["precision"] is None and nothing["recall"] is None and nothing["mean_matched_iou"] is None


def test_shapes_must_agree():
    with pytest.raises(ValueError, match="shape"):
        match_objects(np.zeros((4, 4)), np.zeros((4, 5)))


def test_counter_accumulates_like_object_metrics():
    from samsar.evaluation.objects import ObjectCounter

    truth, pred = _tile()
    counter = ObjectCounter(NAMES, background="background")
    counter.add(truth, pred)
    counter.add(truth, truth)  # a perfect tile: two more matches
    ship = counter.result()["ship"]
    assert (ship["tp"], ship["fp"], ship["fn"]) == (3, 1, 1)
    assert ship["mean_matched_iou"] == pytest.approx((0.8 + 1 + 1) / 3)
    assert counter.result() == object_metrics([(truth, pred), (truth, truth)], NAMES, background="background")
