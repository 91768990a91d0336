"""Confusion-matrix metrics against hand-made matrices and scikit-learn."""

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score, f1_score, jaccard_score, precision_score, recall_score

from samsar.evaluation.metrics import confusion_matrix, mean_scores, segmentation_metrics

NAMES = ["a", "b", "bg"]


def test_confusion_matrix_counts_truth_rows_and_skips_ignore():
    truth = np.array([0, 0, 1, 2, 255, 1])
    pred = np.array([0, 1, 1, 2, 0, 0])
    cm = confusion_matrix(pred, truth, 3, ignore_index=255)
    assert cm.tolist() == [[1, 1, 0], [1, 1, 0], [0, 0, 1]]


def test_confusion_matrix_rejects_out_of_range_prediction():
    with pytest.raises(ValueError, match="predicted class"):
        confusion_matrix(np.array([3]), np.array([0]), 3)


def test_hand_made_matrix():
    # truth rows, prediction columns
    cm = np.array([[8, 2, 0], [1, 6, 3], [0, 4, 16]])
    m = segmentation_metrics(cm, NAMES, background="bg")
    iou = {"a": 8 / (10 + 9 - 8), "b": 6 / (10 + 12 - 6), "bg": 16 / (20 + 19 - 16)}
    assert m["per_class_iou"] == pytest.approx(iou)
    assert m["mIoU"] == pytest.approx(np.mean(list(iou.values())))
    assert m["OA"] == pytest.approx(30 / 40)
    pe = (10 * 9 + 10 * 12 + 20 * 19) / 40**2
    assert m["kappa"] == pytest.approx((0.75 - pe) / (1 - pe))
    assert m["FWIoU"] == pytest.approx(0.25 * iou["a"] + 0.25 * iou["b"] + 0.5 * iou["bg"])
    f1 = {"a": 16 / 19, "b": 12 / 22, "bg": 32 / 39}
    assert m["mF1"] == pytest.approx(np.mean(list(f1.values())))

    std = m["ignore_background"]  # truth-background row dropped
    assert std["per_class_iou"] == pytest.approx({"a": 8 / (10 + 9 - 8), "b": 6 / (10 + 8 - 6)})
    assert std["OA"] == pytest.approx(14 / 20)
    lenient = m["ignore_background_lenient"]  # also the background prediction column dropped
    assert lenient["per_class_iou"] == pytest.approx({"a": 8 / (10 + 9 - 8), "b": 6 / (7 + 8 - 6)})
    assert lenient["OA"] == pytest.approx(14 / 17)
    assert "bg" not in lenient["per_class_iou"]


def test_absent_class_is_left_out_of_means():
    cm = np.array([[5, 0, 0], [0, 0, 0], [1, 0, 4]])
    m = segmentation_metrics(cm, NAMES)
    assert m["per_class_iou"]["b"] is None
    assert m["mIoU"] == pytest.approx(np.mean([5 / 6, 4 / 5]))
    assert "ignore_background" not in m


def test_mf1_reference_skips_a_class_without_true_positive():
    # class b has 3 truth pixels and 2 predictions but no true positive
    cm = np.array([[5, 2, 0], [3, 0, 0], [0, 0, 4]])
    m = segmentation_metrics(cm, NAMES, background="bg")
    f1_a, f1_bg = 10 / (7 + 8), 8 / 8
    assert m["mF1"] == pytest.approx((f1_a + 0.0 + f1_bg) / 3)  # samsar: b counts as 0
    assert m["mF1_reference"] == pytest.approx((f1_a + f1_bg) / 2)  # reference: b left out
    assert "no true positive" in m["mF1_reference_description"]
    std = m["ignore_background"]  # a and b only; b still has no TP
    assert std["mF1"] == pytest.approx(std["per_class_f1"]["a"] / 2)
    assert std["mF1_reference"] == pytest.approx(std["per_class_f1"]["a"])
    perfect = segmentation_metrics(np.diag([3, 4, 5]), NAMES)
    assert perfect["mF1_reference"] == perfect["mF1"] == pytest.approx(1.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_sklearn_on_random_labels(seed):
    rng = np.random.default_rng(seed)
    k = 4
    truth = rng.integers(0, k, 3000)
    # correlated prediction so that scores are far from chance
    pred = np.where(rng.random(3000) < 0.6, truth, rng.integers(0, k, 3000))
    names = [f"c{i}" for i in range(k)]
    m = segmentation_metrics(confusion_matrix(pred, truth, k), names, background="c3")
    labels = list(range(k))
    assert m["kappa"] == pytest.approx(cohen_kappa_score(truth, pred))
    assert m["mIoU"] == pytest.approx(jaccard_score(truth, pred, labels=labels, average="macro"))
    assert m["mF1"] == pytest.approx(f1_score(truth, pred, labels=labels, average="macro"))
    assert m["OA"] == pytest.approx(np.mean(truth == pred))
    assert list(m["per_class_iou"].values()) == pytest.approx(jaccard_score(truth, pred, labels=labels, average=None))
    assert m["mPrecision"] == pytest.approx(precision_score(truth, pred, labels=labels, average="macro"))
    assert m["mRecall"] == pytest.approx(recall_score(truth, pred, labels=labels, average="macro"))

    # standard ignore-background: drop truth==bg pixels, score the foreground classes
    fg = truth != 3
    fg_labels = [0, 1, 2]
    std = m["ignore_background"]
    assert std["mIoU"] == pytest.approx(jaccard_score(truth[fg], pred[fg], labels=fg_labels, average="macro"))
    assert std["kappa"] == pytest.approx(cohen_kappa_score(truth[fg], pred[fg]))
    # lenient: drop truth==bg or pred==bg
    both = fg & (pred != 3)
    lenient = m["ignore_background_lenient"]
    assert lenient["mIoU"] == pytest.approx(jaccard_score(truth[both], pred[both], labels=fg_labels, average="macro"))
    assert lenient["OA"] == pytest.approx(np.mean(truth[both] == pred[both]))


def test_mean_scores_over_many_matrices_match_one_at_a_time():
    rng = np.random.default_rng(0)
    many = rng.integers(0, 40, size=(2, 5, 3, 3))
    many[1, 2] = 0  # an empty matrix: every score undefined
    many[1, 3] = np.diag([0, 9, 0])  # one class fills it: kappa undefined, OA 1
    scores = mean_scores(many)
    assert all(values.shape == (2, 5) for values in scores.values())
    foreground = mean_scores(many, classes=[0, 1])
    expected_kappa = cohen_kappa_score(np.repeat([0, 0, 1, 1], many[0, 0, :2, :2].ravel()),
                                       np.repeat([0, 1, 0, 1], many[0, 0, :2, :2].ravel()))
    assert mean_scores(many[0, 0, :2, :2])["kappa"] == pytest.approx(expected_kappa)
    for s in range(2):
        for t in range(5):
            one = segmentation_metrics(many[s, t], NAMES)
            for key in ("mIoU", "mF1", "OA", "kappa"):
                assert scores[key][s, t] == pytest.approx(one[key], nan_ok=True), (s, t, key)
            iou = [one["per_class_iou"][n] for n in ("a", "b")]
            defined = [v for v in iou if v is not None]
            assert foreground["mIoU"][s, t] == pytest.approx(np.mean(defined) if defined else np.nan, nan_ok=True)
    assert np.isnan(scores["mIoU"][1, 2]) and np.isnan(scores["kappa"][1, 3]) and scores["OA"][1, 3] == 1.0
