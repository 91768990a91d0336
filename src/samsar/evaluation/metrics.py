"""Segmentation metrics from one global confusion matrix.

Three forms are reported side by side:

- ``all``: every class, every labelled pixel (the top-level numbers of ``metrics/<variant>.json``);
- ``ignore_background``: the standard form — pixels whose *truth* is background are dropped and
  the background class is left out of the class averages;
- ``ignore_background_lenient``: the CWSAM reference form — pixels whose truth *or* prediction is
  background are dropped (this forgives every foreground pixel predicted as background).

Each form gives two mean F1s: ``mF1`` (samsar's: a class with no true positive scores 0 and
counts) and ``mF1_reference`` (the CWSAM reference's: such a class has an undefined F1, 0/0 from
precision and recall, and is left out of the mean, which flatters models that miss a class).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def confusion_matrix(pred: np.ndarray, truth: np.ndarray, num_classes: int, ignore_index: int | None = None) -> np.ndarray:
    """Counts ``cm[t, p]`` of pixels with truth ``t`` predicted as ``p`` (int64, ``K x K``).

    Pixels whose truth is ``ignore_index`` (or outside ``[0, K)``) are not counted.
    """
    pred = np.asarray(pred).ravel().astype(np.int64)
    truth = np.asarray(truth).ravel().astype(np.int64)
    if pred.shape != truth.shape:
        raise ValueError(f"prediction and truth differ in size: {pred.size} vs {truth.size}")
    keep = (truth >= 0) & (truth < num_classes)
    if ignore_index is not None:
        keep &= truth != ignore_index
    if np.any((pred[keep] < 0) | (pred[keep] >= num_classes)):
        raise ValueError(f"predicted class outside [0, {num_classes})")
    flat = truth[keep] * num_classes + pred[keep]
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


MF1_REFERENCE_DESCRIPTION = ("CWSAM reference convention: a class with no true positive has an undefined F1 "
                             "and is left out of the mean (mF1 counts it as 0)")


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.full(np.shape(num), np.nan, dtype=np.float64)
    np.divide(num, den, out=out, where=np.asarray(den) > 0)
    return out


def _nanmean(values: np.ndarray) -> float:
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float("nan")


def _class_mean(values: np.ndarray) -> np.ndarray:
    """Mean over the last axis of the defined (non-NaN) values; NaN where none is."""
    defined = ~np.isnan(values)
    return _safe_div(np.where(defined, values, 0.0).sum(axis=-1), defined.sum(axis=-1))


def mean_scores(confusion: np.ndarray, classes: Sequence[int] | None = None) -> dict[str, np.ndarray]:
    """mIoU, mF1, OA and kappa of confusion matrices ``(..., K, K)`` (truth rows) as ``(...)`` arrays,
    class means over ``classes`` (default all). Classes absent from truth and prediction are left
    out of the means; NaN where a score is undefined. Vectorised for the bootstrap's many matrices;
    :func:`segmentation_metrics` takes its numbers from here."""
    cm = np.asarray(confusion, dtype=np.float64)
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    truth, pred = cm.sum(axis=-1), cm.sum(axis=-2)
    total = cm.sum(axis=(-2, -1))
    idx = np.arange(cm.shape[-1]) if classes is None else np.asarray(classes, dtype=np.int64)
    oa = _safe_div(tp.sum(axis=-1), total)
    expected = _safe_div((truth * pred).sum(axis=-1), total**2)
    return {
        "mIoU": _class_mean(_safe_div(tp, truth + pred - tp)[..., idx]),
        "mF1": _class_mean(_safe_div(2 * tp, truth + pred)[..., idx]),
        "OA": oa,
        "kappa": _safe_div(oa - expected, 1.0 - expected),
    }


def _scores(cm: np.ndarray, class_names: Sequence[str], classes: Sequence[int]) -> dict:
    """Metrics of ``cm`` with class averages taken over ``classes`` (present ones only)."""
    cm = cm.astype(np.float64)
    tp = np.diag(cm)
    truth_count = cm.sum(axis=1)
    pred_count = cm.sum(axis=0)
    total = cm.sum()
    iou = _safe_div(tp, truth_count + pred_count - tp)
    precision = _safe_div(tp, pred_count)
    recall = _safe_div(tp, truth_count)
    f1 = _safe_div(2 * tp, truth_count + pred_count)
    idx = np.asarray(classes, dtype=np.int64)
    means = {key: float(value) for key, value in mean_scores(cm, idx).items()}
    freq = truth_count[idx] / truth_count[idx].sum() if truth_count[idx].sum() else np.zeros(idx.size)
    fwiou = float(np.nansum(freq * np.nan_to_num(iou[idx])))
    names = [class_names[i] for i in idx]

    def per_class(values: np.ndarray) -> dict[str, float | None]:
        return {n: (None if np.isnan(v) else float(v)) for n, v in zip(names, values[idx])}

    return {
        "mIoU": means["mIoU"],
        "mF1": means["mF1"],
        "mF1_reference": _nanmean(np.where(tp[idx] > 0, f1[idx], np.nan)),
        "mF1_reference_description": MF1_REFERENCE_DESCRIPTION,
        "mPrecision": _nanmean(precision[idx]),
        "mRecall": _nanmean(recall[idx]),
        "OA": means["OA"],
        "kappa": means["kappa"],
        "FWIoU": fwiou,
        "per_class_iou": per_class(iou),
        "per_class_precision": per_class(precision),
        "per_class_recall": per_class(recall),
        "per_class_f1": per_class(f1),
        "n_pixels": int(total),
    }


def segmentation_metrics(cm: np.ndarray, class_names: Sequence[str], background: str | None = None) -> dict:
    """All metric forms of one confusion matrix.

    Top level: the all-classes form. With a ``background`` class, two nested dicts add the
    standard (``ignore_background``) and the reference-lenient (``ignore_background_lenient``) forms.
    """
    cm = np.asarray(cm, dtype=np.int64)
    k = len(class_names)
    if cm.shape != (k, k):
        raise ValueError(f"confusion matrix shape {cm.shape} does not match {k} class names")
    result = _scores(cm, class_names, range(k))
    if background is None:
        return result
    if background not in class_names:
        raise ValueError(f"background class '{background}' is not one of {list(class_names)}")
    bg = list(class_names).index(background)
    foreground = [i for i in range(k) if i != bg]

    standard = cm.copy()
    standard[bg, :] = 0  # drop pixels whose truth is background
    result["ignore_background"] = {
        **_scores(standard, class_names, foreground),
        "description": f"pixels whose truth is '{background}' dropped; '{background}' left out of the averages",
    }
    lenient = standard.copy()
    lenient[:, bg] = 0  # additionally drop pixels predicted as background (CWSAM reference)
    result["ignore_background_lenient"] = {
        **_scores(lenient, class_names, foreground),
        "description": f"CWSAM reference form: pixels whose truth or prediction is '{background}' dropped",
    }
    return result


ABSENT = "absent"  # how reports show a class with no test pixels and none predicted (IoU null)
ABSENT_NOTE = ("*absent*: no pixel of the class in the test split and none predicted, in every seed: "
               "it has no score and is left out of the means (not counted as 0)")


def absent_classes(per_class_iou: dict[str, float | None]) -> list[str]:
    """The classes whose IoU is undefined (``null``): absent from both truth and prediction."""
    return [name for name, value in per_class_iou.items() if value is None]


def format_metric(value: float | None, digits: int = 3) -> str:
    """A metric for tables and logs: fixed decimals, ``n/a`` when undefined (None or NaN)."""
    if value is None or value != value:
        return "n/a"
    return f"{value:.{digits}f}"
