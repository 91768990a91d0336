"""Headline metrics of a variant: ``results/<variant>.json``, a small flat file of numbers that git
keeps and DVC reads as the ``evaluate`` stage's metrics, so ``dvc exp show`` and ``dvc metrics diff``
compare them across commits and experiments.

For each of mIoU, mF1, OA and kappa (all-classes form): the mean over seeds (``mIoU``), the
standard deviation over seeds (``mIoU_std``) and the 95 % bootstrap interval of the seed mean
(``mIoU_ci_low``, ``mIoU_ci_high``: test tiles resampled with replacement, then each replicate's
seeds, as the comparison report does). For each object class (``evaluate.object_classes``), its
object F1 the same way (``object_f1_<class>``, ``_std``, ``_ci_low``, ``_ci_high``, taken from the
metrics file). No strings, no NaN: an undefined value is left out. The detailed files
(``metrics/<variant>.json``, ``.seeds.json``, ``.tiles.npz``) stay where they are.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from samsar.config import Params
from samsar.evaluation.metrics import mean_scores
from samsar.io import is_finite_number, write_json
from samsar.uncertainty import TileConfusions, seed_mean_intervals

RESULTS_DIR = "results"  # git-tracked: headline metrics and training curves (not in .gitignore)
HEADLINE_KEYS = ("mIoU", "mF1", "OA", "kappa")


def headline_path(params: Params, variant: str) -> Path:
    """``results/<variant>.json``."""
    return params.path(RESULTS_DIR) / f"{variant}.json"


def _bounds(interval: object) -> tuple[object, object]:
    """``{"low", "high", ...}`` or ``[low, high]`` -> (low, high); (None, None) otherwise."""
    if isinstance(interval, dict):
        return interval.get("low"), interval.get("high")
    if isinstance(interval, (list, tuple)) and len(interval) == 2:
        return interval[0], interval[1]
    return None, None


def _object_f1(metrics: dict) -> dict[str, object]:
    """``object_f1_<class>`` with ``_std``, ``_ci_low``, ``_ci_high`` from the metrics file's
    ``object_f1`` (class -> mean over seeds, or one number), ``object_f1_std`` and ``object_f1_interval``."""
    f1, std, interval = (metrics.get(key) for key in ("object_f1", "object_f1_std", "object_f1_interval"))
    if isinstance(f1, dict):
        rows = [(f"object_f1_{str(name).replace(' ', '_')}", value,
                 std.get(name) if isinstance(std, dict) else None,
                 interval.get(name) if isinstance(interval, dict) else None) for name, value in f1.items()]
    else:
        rows = [("object_f1", f1, std, interval)]
    out: dict[str, object] = {}
    for key, value, spread, bounds in rows:
        low, high = _bounds(bounds)
        out.update({key: value, f"{key}_std": spread, f"{key}_ci_low": low, f"{key}_ci_high": high})
    return out


def headline_metrics(metrics: dict, tiles: TileConfusions | None = None) -> dict[str, float]:
    """The flat, numbers-only headline of a ``metrics/<variant>.json`` dict (and its per-tile
    confusions, for the intervals); undefined values are left out."""
    intervals = seed_mean_intervals(tiles, mean_scores) if tiles is not None else {}
    out: dict[str, float] = {}
    for key in HEADLINE_KEYS:
        for name, value in ((key, metrics.get(key)), (f"{key}_std", metrics.get(f"{key}_std"))):
            if is_finite_number(value):
                out[name] = float(value)
        interval = intervals.get(key)
        if interval is not None and all(np.isfinite(interval)):
            out[f"{key}_ci_low"], out[f"{key}_ci_high"] = interval
    for name, value in _object_f1(metrics).items():
        if is_finite_number(value):
            out[name] = float(value)
    return out


def write_headline(params: Params, variant: str, metrics: dict, tiles: TileConfusions | None = None) -> Path:
    """Write ``results/<variant>.json`` atomically (sorted keys); returns its path."""
    path = headline_path(params, variant)
    write_json(path, headline_metrics(metrics, tiles))
    return path
