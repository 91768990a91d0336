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
    found = match_objects(truth, truth)
    assert (found["tp"], found["fp"], found["fn"], found["matched_ious"]) == (1, 0, 0, [1.0])
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


def _ships_tile():
    """Three true ships at cols 1-3 and 6-8 (found) and 11-13 (missed, 9 px: small); the prediction
    adds a false 30 x 40 px blob (1200 px: large)."""
    truth = np.zeros((64, 64), dtype=np.uint8)
    for col in (1, 6, 11):
        truth[1:4, col:col + 3] = 1
    pred = np.zeros_like(truth)
    for col in (1, 6):
        pred[1:4, col:col + 3] = 1
    pred[20:50, 10:50] = 1
    return truth, pred


def test_two_found_one_missed_one_false_alarm_through_the_evaluation_scorer():
    from samsar.config import Params
    from samsar.evaluation.runner import object_boundary_metrics, scorers

    params = Params.model_validate({
        "data": {"classes": [{"name": "background", "color": [0, 0, 0]}, {"name": "ship", "color": [0, 255, 0]},
                             {"name": "sea ice", "color": [0, 0, 255]}]},
        "evaluate": {"object_classes": ["ship"]},
    })
    objects, boundaries = scorers(params, params.data.class_names, "background", 255)
    assert [objects.class_names[i] for i in objects.classes] == ["ship"]  # sea ice is land cover: boundary F1
    assert [boundaries.class_names[i] for i in boundaries.classes] == ["sea ice"]
    truth, pred = _ships_tile()
    objects.add(truth, pred)
    boundaries.add(truth, pred)
    keys = object_boundary_metrics(objects, boundaries)
    assert keys["object_precision"]["ship"] == pytest.approx(2 / 3)
    assert keys["object_recall"]["ship"] == pytest.approx(2 / 3)
    assert keys["object_f1"]["ship"] == pytest.approx(2 / 3)
    assert keys["object_mean_iou"]["ship"] == pytest.approx(1.0)
    ship = keys["objects"]["ship"]
    assert (ship["tp"], ship["fp"], ship["fn"]) == (2, 1, 1)
    assert ship["missed_by_size"] == {"small": 1, "medium": 0, "large": 0}
    assert ship["false_by_size"] == {"small": 0, "medium": 0, "large": 1}
    assert keys["boundary_f1"] == {"sea ice": None} and keys["mBF1"] is None  # no sea ice anywhere
    assert objects.tile_counts()["ship"].tolist() == [[2, 1, 1]]


def test_size_buckets():
    from samsar.evaluation.objects import size_bucket

    assert [size_bucket(a) for a in (1, 99, 100, 999, 1000)] == ["small", "small", "medium", "medium", "large"]


def test_object_classes_must_be_known_non_background_classes():
    from samsar.config import Params

    data = {"classes": [{"name": "background", "color": [0, 0, 0]}, {"name": "ship", "color": [0, 255, 0]}]}
    for wrong in (["boat"], ["background"]):
        with pytest.raises(ValueError, match="evaluate.object_classes: .* is not a non-background class"):
            Params.model_validate({"data": data, "evaluate": {"object_classes": wrong}})
    assert Params.model_validate({"data": data}).evaluate.object_classes == []


def test_object_f1_interval_brackets_the_seed_mean_and_narrows_with_agreement():
    from samsar.evaluation.objects import object_f1_interval

    rng = np.random.default_rng(0)
    tp = rng.integers(0, 5, size=(2, 40))
    counts = np.stack([tp, rng.integers(0, 3, size=(2, 40)), rng.integers(0, 3, size=(2, 40))], axis=-1)
    low, high = object_f1_interval(counts)
    f1 = [2 * c[:, 0].sum() / (2 * c[:, 0].sum() + c[:, 1].sum() + c[:, 2].sum()) for c in counts]
    assert low < np.mean(f1) < high
    perfect = np.zeros((2, 40, 3), dtype=np.int64)
    perfect[..., 0] = 3
    assert object_f1_interval(perfect) == (1.0, 1.0)
    assert object_f1_interval(np.zeros((1, 5, 3))) is None
