"""Object-level metrics for object classes (e.g. ships): detection counts from connected components.

Per tile and per non-background class, the connected components (8-connectivity,
``skimage.measure.label``) of the truth and of the prediction are matched one-to-one, greedily by
IoU (highest first), keeping pairs with IoU >= ``iou_threshold`` (0.5). A matched pair is a true
positive, an unmatched predicted object a false positive, an unmatched true object a false
negative. Two ships predicted as one blob match at most one of them (the other is missed), and a
blob's IoU with either is low, so merging is penalised. Pixels whose truth is ``ignore_index``
belong to no object and are removed from the prediction too.

Counts are summed over tiles: precision = TP / (TP + FP), recall = TP / (TP + FN), F1 from those,
``mean_matched_iou`` = mean IoU of the matched pairs (None where a value is undefined). Missed
(unmatched true) and false (unmatched predicted) objects are also counted by size bucket
(:data:`SIZE_BUCKETS`: small < 100 px, medium 100-999 px, large >= 1000 px), a true object by its
own area, a false one by the predicted object's area. An object cut by a tile edge counts once per
tile it appears in.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from skimage.measure import label as connected_components

from samsar.evaluation.boundaries import ratio
from samsar.uncertainty import BOOTSTRAP_REPLICATES, CONFIDENCE, seed_mean_intervals

IOU_THRESHOLD = 0.5
# Object size buckets by area in pixels: (name, exclusive upper bound); the last has none.
SIZE_BUCKETS: tuple[tuple[str, int | None], ...] = (("small", 100), ("medium", 1000), ("large", None))
SIZE_BUCKETS_DESCRIPTION = {"small": "< 100 px", "medium": "100-999 px", "large": ">= 1000 px"}


def size_bucket(area: int) -> str:
    """The :data:`SIZE_BUCKETS` name of an object of ``area`` pixels."""
    for name, upper in SIZE_BUCKETS:
        if upper is None or area < upper:
            return name
    raise AssertionError("unreachable")


def _by_size(areas) -> dict[str, int]:
    counts = {name: 0 for name, _ in SIZE_BUCKETS}
    for area in areas:
        counts[size_bucket(int(area))] += 1
    return counts


def match_objects(truth_mask: np.ndarray, pred_mask: np.ndarray, iou_threshold: float = IOU_THRESHOLD) -> dict:
    """Match the connected components of two boolean masks of one tile.

    Returns ``{"tp", "fp", "fn", "matched_ious", "missed_by_size", "false_by_size"}``: counts, the
    IoUs of the matched pairs, and the unmatched true / predicted objects per size bucket.
    """
    truth_mask, pred_mask = np.asarray(truth_mask, dtype=bool), np.asarray(pred_mask, dtype=bool)
    if truth_mask.shape != pred_mask.shape:
        raise ValueError(f"truth and prediction differ in shape: {truth_mask.shape} vs {pred_mask.shape}")
    truth_labels, n_truth = connected_components(truth_mask, connectivity=2, return_num=True)
    pred_labels, n_pred = connected_components(pred_mask, connectivity=2, return_num=True)
    # Intersections of every (truth, prediction) pair from one joint histogram; areas per label.
    joint = np.bincount(truth_labels.ravel() * (n_pred + 1) + pred_labels.ravel(),
                        minlength=(n_truth + 1) * (n_pred + 1)).reshape(n_truth + 1, n_pred + 1)
    intersection = joint[1:, 1:].astype(np.float64)
    truth_area = joint[1:, :].sum(axis=1, keepdims=True)
    pred_area = joint[:, 1:].sum(axis=0, keepdims=True)
    iou = intersection / np.maximum(truth_area + pred_area - intersection, 1)
    candidates = np.argwhere(iou >= iou_threshold)
    order = np.argsort(-iou[candidates[:, 0], candidates[:, 1]], kind="stable")
    used_truth, used_pred, matched = set(), set(), []
    for t, p in candidates[order]:
        if t not in used_truth and p not in used_pred:
            used_truth.add(t)
            used_pred.add(p)
            matched.append(float(iou[t, p]))
    missed = [truth_area[t, 0] for t in range(n_truth) if t not in used_truth]
    false = [pred_area[0, p] for p in range(n_pred) if p not in used_pred]
    return {"tp": len(matched), "fp": int(n_pred - len(matched)), "fn": int(n_truth - len(matched)),
            "matched_ious": matched, "missed_by_size": _by_size(missed), "false_by_size": _by_size(false)}


class ObjectCounter:
    """Accumulates object matches tile by tile (counts, matched IoUs and per-tile TP/FP/FN).

    ``object_classes``: the class names scored as objects (None: every non-background class).
    """

    def __init__(self, class_names: Sequence[str], background: str | None = None, ignore_index: int | None = None,
                 iou_threshold: float = IOU_THRESHOLD, object_classes: Sequence[str] | None = None) -> None:
        self.class_names = list(class_names)
        unknown = [name for name in object_classes or () if name not in self.class_names]
        if unknown:
            raise ValueError(f"object classes {unknown} are not among {self.class_names}")
        self.classes = [i for i, name in enumerate(self.class_names)
                        if name != background and (object_classes is None or name in object_classes)]
        self.ignore_index = ignore_index
        self.iou_threshold = iou_threshold
        self.totals = {i: {"tp": 0, "fp": 0, "fn": 0, "matched_ious": [], "missed_by_size": _by_size(()),
                           "false_by_size": _by_size(())} for i in self.classes}
        self.per_tile = {i: [] for i in self.classes}  # (tp, fp, fn) per tile, in the order added

    def add(self, truth: np.ndarray, pred: np.ndarray) -> None:
        """One tile's truth and predicted class-index maps."""
        truth, pred = np.asarray(truth), np.asarray(pred)
        valid = truth != self.ignore_index if self.ignore_index is not None else np.ones(truth.shape, dtype=bool)
        for i in self.classes:
            found = match_objects((truth == i) & valid, (pred == i) & valid, self.iou_threshold)
            totals = self.totals[i]
            for key in ("tp", "fp", "fn"):
                totals[key] += found[key]
            totals["matched_ious"] += found["matched_ious"]
            for key in ("missed_by_size", "false_by_size"):
                for bucket, n in found[key].items():
                    totals[key][bucket] += n
            self.per_tile[i].append((found["tp"], found["fp"], found["fn"]))

    def tile_counts(self) -> dict[str, np.ndarray]:
        """``class name -> (T, 3)`` int array of per-tile (TP, FP, FN) (for bootstrap intervals)."""
        return {self.class_names[i]: np.asarray(self.per_tile[i], dtype=np.int64).reshape(-1, 3) for i in self.classes}

    def result(self) -> dict[str, dict]:
        """``class name -> {"precision", "recall", "f1", "mean_matched_iou", "tp", "fp", "fn",
        "n_true_objects", "n_predicted_objects", "missed_by_size", "false_by_size"}`` (None where undefined)."""
        out = {}
        for i in self.classes:
            tp, fp, fn, ious = (self.totals[i][k] for k in ("tp", "fp", "fn", "matched_ious"))
            out[self.class_names[i]] = {
                "precision": ratio(tp, tp + fp),
                "recall": ratio(tp, tp + fn),
                "f1": ratio(2 * tp, 2 * tp + fp + fn),
                "mean_matched_iou": float(np.mean(ious)) if ious else None,
                "tp": tp, "fp": fp, "fn": fn,
                "n_true_objects": tp + fn, "n_predicted_objects": tp + fp,
                "missed_by_size": dict(self.totals[i]["missed_by_size"]),
                "false_by_size": dict(self.totals[i]["false_by_size"]),
            }
        return out


def object_metrics(tiles: Iterable[tuple[np.ndarray, np.ndarray]], class_names: Sequence[str],
                   background: str | None = None, ignore_index: int | None = None,
                   iou_threshold: float = IOU_THRESHOLD, object_classes: Sequence[str] | None = None) -> dict[str, dict]:
    """Object precision / recall / F1, mean matched IoU and missed / false objects by size per
    object class over ``(truth, prediction)`` class-index maps of the test tiles (see :class:`ObjectCounter`)."""
    counter = ObjectCounter(class_names, background, ignore_index, iou_threshold, object_classes)
    for truth, pred in tiles:
        counter.add(truth, pred)
    return counter.result()


def object_f1_interval(counts: np.ndarray, replicates: int = BOOTSTRAP_REPLICATES, confidence: float = CONFIDENCE,
                       seed: int = 0) -> tuple[float, float] | None:
    """Bootstrap interval of the seed-mean object F1 from per-(seed, tile) ``(TP, FP, FN)`` counts
    ``(S, T, 3)``: test tiles resampled with replacement, then each replicate's seeds
    (:func:`samsar.uncertainty.seed_mean_intervals`). None when F1 is undefined (no true and no
    predicted object)."""
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 3 or counts.shape[-1] != 3 or counts.shape[1] == 0:
        raise ValueError(f"expected (seeds, tiles, 3) counts, got shape {counts.shape}")
    if counts.sum() == 0:
        return None

    def f1(pooled: np.ndarray) -> dict[str, np.ndarray]:
        tp, fp, fn = np.moveaxis(pooled, -1, 0)
        den = 2 * tp + fp + fn
        return {"f1": np.divide(2 * tp, den, out=np.full(den.shape, np.nan), where=den > 0)}

    # a replicate drawing only object-free tiles has no F1 and is left out
    return seed_mean_intervals(counts, f1, replicates, confidence, seed)["f1"]
