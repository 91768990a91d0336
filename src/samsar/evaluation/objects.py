"""Object-level metrics for object classes (e.g. ships): detection counts from connected components.

Per tile and per non-background class, the connected components (8-connectivity,
``skimage.measure.label``) of the truth and of the prediction are matched one-to-one, greedily by
IoU (highest first), keeping pairs with IoU >= ``iou_threshold`` (0.5). A matched pair is a true
positive, an unmatched predicted object a false positive, an unmatched true object a false
negative. Two ships predicted as one blob match at most one of them (the other is missed), and a
blob's IoU with either is low, so merging is penalised. Pixels whose truth is ``ignore_index``
belong to no object and are removed from the prediction too.

Counts are summed over tiles: precision = TP / (TP + FP), recall = TP / (TP + FN), F1 from those,
``mean_matched_iou`` = mean IoU of the matched pairs (None where a value is undefined).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from skimage.measure import label as connected_components

IOU_THRESHOLD = 0.5


def match_objects(truth_mask: np.ndarray, pred_mask: np.ndarray, iou_threshold: float = IOU_THRESHOLD) -> dict:
    """Match the connected components of two boolean masks of one tile.

    Returns ``{"tp", "fp", "fn", "matched_ious"}`` (counts and the IoUs of the matched pairs).
    """
    truth_mask, pred_mask = np.asarray(truth_mask, dtype=bool), np.asarray(pred_mask, dtype=bool)
    if truth_mask.shape != pred_mask.shape:
        raise ValueError(f"truth and prediction differ in shape: {truth_mask.shape} vs {pred_mask.shape}")
    truth_labels, n_truth = connected_components(truth_mask, connectivity=2, return_num=True)
    pred_labels, n_pred = connected_components(pred_mask, connectivity=2, return_num=True)
    if n_truth == 0 or n_pred == 0:
        return {"tp": 0, "fp": int(n_pred), "fn": int(n_truth), "matched_ious": []}
    # Intersections of every (truth, prediction) pair from one joint histogram; areas per label.
    joint = np.bincount(truth_labels.ravel() * (n_pred + 1) + pred_labels.ravel(),
                        minlength=(n_truth + 1) * (n_pred + 1)).reshape(n_truth + 1, n_pred + 1)
    intersection = joint[1:, 1:].astype(np.float64)
    truth_area = joint[1:, :].sum(axis=1, keepdims=True)
    pred_area = joint[:, 1:].sum(axis=0, keepdims=True)
    iou = intersection / (truth_area + pred_area - intersection)
    candidates = np.argwhere(iou >= iou_threshold)
    order = np.argsort(-iou[candidates[:, 0], candidates[:, 1]], kind="stable")
    used_truth, used_pred, matched = set(), set(), []
    for t, p in candidates[order]:
        if t not in used_truth and p not in used_pred:
            used_truth.add(t)
            used_pred.add(p)
            matched.append(float(iou[t, p]))
    return {"tp": len(matched), "fp": int(n_pred - len(matched)), "fn": int(n_truth - len(matched)),
            "matched_ious": matched}


def _ratio(num: float, den: float) -> float | None:
    return float(num / den) if den else None


class ObjectCounter:
    """Accumulates object matches tile by tile (nothing kept but counts and matched IoUs)."""

    def __init__(self, class_names: Sequence[str], background: str | None = None, ignore_index: int | None = None,
                 iou_threshold: float = IOU_THRESHOLD) -> None:
        self.class_names = list(class_names)
        self.classes = [i for i, name in enumerate(self.class_names) if name != background]
        self.ignore_index = ignore_index
        self.iou_threshold = iou_threshold
        self.totals = {i: {"tp": 0, "fp": 0, "fn": 0, "matched_ious": []} for i in self.classes}

    def add(self, truth: np.ndarray, pred: np.ndarray) -> None:
        """One tile's truth and predicted class-index maps."""
        truth, pred = np.asarray(truth), np.asarray(pred)
        valid = truth != self.ignore_index if self.ignore_index is not None else np.ones(truth.shape, dtype=bool)
        for i in self.classes:
            found = match_objects((truth == i) & valid, (pred == i) & valid, self.iou_threshold)
            for key in ("tp", "fp", "fn"):
                self.totals[i][key] += found[key]
            self.totals[i]["matched_ious"] += found["matched_ious"]

    def result(self) -> dict[str, dict]:
        """``class name -> {"precision", "recall", "f1", "mean_matched_iou", "tp", "fp", "fn",
        "n_true_objects", "n_predicted_objects"}`` (None where undefined)."""
        out = {}
        for i in self.classes:
            tp, fp, fn, ious = (self.totals[i][k] for k in ("tp", "fp", "fn", "matched_ious"))
            out[self.class_names[i]] = {
                "precision": _ratio(tp, tp + fp),
                "recall": _ratio(tp, tp + fn),
                "f1": _ratio(2 * tp, 2 * tp + fp + fn),
                "mean_matched_iou": float(np.mean(ious)) if ious else None,
                "tp": tp, "fp": fp, "fn": fn,
                "n_true_objects": tp + fn, "n_predicted_objects": tp + fp,
            }
        return out


def object_metrics(tiles: Iterable[tuple[np.ndarray, np.ndarray]], class_names: Sequence[str],
                   background: str | None = None, ignore_index: int | None = None,
                   iou_threshold: float = IOU_THRESHOLD) -> dict[str, dict]:
    """Object precision / recall / F1 and mean matched IoU per non-background class over
    ``(truth, prediction)`` class-index maps of the test tiles (see :class:`ObjectCounter`)."""
    counter = ObjectCounter(class_names, background, ignore_index, iou_threshold)
    for truth, pred in tiles:
        counter.add(truth, pred)
    return counter.result()
