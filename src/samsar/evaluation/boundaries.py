"""Boundary F1 for land-cover classes: how well predicted class edges follow the true ones.

Per tile and class, the boundary pixels of the class mask (``skimage.segmentation.find_boundaries``,
``mode="inner"``: the class's own pixels next to another class; a tile's border is no boundary)
are taken in truth and prediction. A predicted boundary pixel is correct when a true boundary
pixel lies within ``tolerance`` pixels (Euclidean: a dilation by a disk of that radius), and a
true boundary pixel is found when a predicted one lies within ``tolerance``. Boundary pixels within
one pixel of an ``ignore_index`` pixel are left out of both (the edge of an unlabelled area is no
class boundary). Counts are summed over tiles: precision = correct predicted / predicted boundary
pixels, recall = found true / true boundary pixels, F1 from those (None where undefined), and
``mBF1`` is the mean F1 over the classes where it is defined.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from scipy import ndimage
from skimage.segmentation import find_boundaries

BOUNDARY_TOLERANCE = 2  # pixels


def ratio(num: float, den: float) -> float | None:
    """``num / den``, None when ``den`` is 0 (an undefined precision, recall or F1)."""
    return float(num / den) if den else None


def _disk(radius: int) -> np.ndarray:
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return yy**2 + xx**2 <= radius**2


def _within(targets: np.ndarray, tolerance: int) -> np.ndarray:
    """Pixels within ``tolerance`` (Euclidean distance) of a ``targets`` pixel."""
    if tolerance <= 0 or not targets.any():
        return targets
    return ndimage.binary_dilation(targets, structure=_disk(tolerance))


def _countable(valid: np.ndarray) -> np.ndarray | None:
    """Pixels at least one pixel away from every invalid one (None: all are)."""
    invalid = ~np.asarray(valid, dtype=bool)
    if not invalid.any():
        return None
    return ~ndimage.binary_dilation(invalid, structure=np.ones((3, 3), dtype=bool))


def _counts(truth_mask: np.ndarray, pred_mask: np.ndarray, tolerance: int, keep: np.ndarray | None) -> dict[str, int]:
    truth_b = find_boundaries(truth_mask, mode="inner")
    pred_b = find_boundaries(pred_mask, mode="inner")
    if keep is not None:
        truth_b &= keep
        pred_b &= keep
    return {
        "pred_matched": int((pred_b & _within(truth_b, tolerance)).sum()),
        "n_pred": int(pred_b.sum()),
        "truth_matched": int((truth_b & _within(pred_b, tolerance)).sum()),
        "n_truth": int(truth_b.sum()),
    }


class BoundaryCounter:
    """Accumulates boundary matches of ``classes`` (names) tile by tile."""

    def __init__(self, class_names: Sequence[str], classes: Sequence[str], ignore_index: int | None = None,
                 tolerance: int = BOUNDARY_TOLERANCE) -> None:
        self.class_names = list(class_names)
        unknown = [name for name in classes if name not in self.class_names]
        if unknown:
            raise ValueError(f"boundary classes {unknown} are not among {self.class_names}")
        self.classes = [self.class_names.index(name) for name in classes]
        self.ignore_index = ignore_index
        self.tolerance = tolerance
        self.totals = {i: {"pred_matched": 0, "n_pred": 0, "truth_matched": 0, "n_truth": 0} for i in self.classes}

    def add(self, truth: np.ndarray, pred: np.ndarray) -> None:
        """One tile's truth and predicted class-index maps."""
        truth, pred = np.asarray(truth), np.asarray(pred)
        valid = truth != self.ignore_index if self.ignore_index is not None else None
        keep = None if valid is None else _countable(valid)
        for i in self.classes:
            pred_mask = pred == i if valid is None else (pred == i) & valid
            for key, n in _counts(truth == i, pred_mask, self.tolerance, keep).items():
                self.totals[i][key] += n

    def result(self) -> dict[str, dict]:
        """``class name -> {"precision", "recall", "f1", "n_true_boundary", "n_predicted_boundary"}``."""
        out = {}
        for i in self.classes:
            t = self.totals[i]
            precision, recall = ratio(t["pred_matched"], t["n_pred"]), ratio(t["truth_matched"], t["n_truth"])
            f1 = None
            if precision is not None and recall is not None:
                f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
            elif t["n_pred"] or t["n_truth"]:
                f1 = 0.0  # boundaries on one side only: nothing matched
            out[self.class_names[i]] = {"precision": precision, "recall": recall, "f1": f1,
                                        "n_true_boundary": t["n_truth"], "n_predicted_boundary": t["n_pred"]}
        return out


def mean_boundary_f1(per_class: dict[str, dict]) -> float | None:
    """``mBF1``: mean boundary F1 over the classes where it is defined (None when none is)."""
    values = [v["f1"] for v in per_class.values() if v["f1"] is not None]
    return float(np.mean(values)) if values else None


def boundary_metrics(tiles: Iterable[tuple[np.ndarray, np.ndarray]], class_names: Sequence[str], classes: Sequence[str],
                     ignore_index: int | None = None, tolerance: int = BOUNDARY_TOLERANCE) -> dict[str, dict]:
    """Boundary precision / recall / F1 per class of ``classes`` over ``(truth, prediction)`` tiles."""
    counter = BoundaryCounter(class_names, classes, ignore_index, tolerance)
    for truth, pred in tiles:
        counter.add(truth, pred)
    return counter.result()
