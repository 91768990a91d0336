"""A trained variant in a few lines: headline metrics with their spread, caveats and base model.

The model card opens with it (:func:`samsar.reporting.card.card_summary`) and it is the
description of the variant's registered model version.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from samsar.uncertainty import CONFIDENCE, TileConfusions, seed_mean_interval

HEADLINE = ("mIoU", "mF1", "OA", "kappa")
DESCRIPTION_LIMIT = 5000  # MLflow's model version description column


def tiles_interval(path: Path) -> tuple[float, float] | None:
    """The seed-mean test mIoU's bootstrap interval (:func:`samsar.uncertainty.seed_mean_interval`) of
    the per-tile archive at ``path``; None when it is missing, unreadable or without tiles."""
    try:
        return seed_mean_interval(TileConfusions.load(path))
    except (OSError, ValueError):
        return None


def _num(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) and math.isfinite(value) else "n/a"


def caveats(metrics: dict[str, Any]) -> list[str]:
    """What limits the headline numbers: cut short, degenerate scores, absent classes, no win over the majority class."""
    found = []
    if metrics.get("cut_short"):
        found.append("CUT SHORT by the wall-time guard (train.max_seconds): not comparable, never promoted")
    per_class = metrics.get("per_class_iou") or {}
    if "ignore_background" in metrics and len(per_class) - 1 < 2:
        found.append("ignore-background scores are degenerate with one non-background class (they are its recall)")
    absent = [name for name, value in per_class.items() if value is None]
    if absent:
        found.append(f"not tested on {', '.join(absent)} (absent from the test split and never predicted)")
    score, majority = metrics.get("mIoU"), metrics.get("majority_mIoU")
    if isinstance(score, (int, float)) and isinstance(majority, (int, float)) and score <= majority:
        found.append(f"no better than predicting '{metrics.get('majority_class', '?')}' everywhere "
                     f"(mIoU {_num(score)} vs {_num(majority)})")
    if isinstance(metrics.get("n_test_tiles"), int) and metrics["n_test_tiles"] < 50:
        found.append(f"only {metrics['n_test_tiles']} test tiles")
    return found


def model_summary(variant: str, metrics: dict[str, Any], base: str, interval: tuple[float, float] | None = None) -> str:
    """Markdown lines: variant and seeds, headline test metrics (mean ± std over seeds, the mIoU
    interval), the base checkpoint (``base``: its path and id) and the caveats."""
    seeds = metrics.get("seeds") or []
    scores = []
    for key in HEADLINE:
        if key not in metrics:
            continue
        text = f"{key} {_num(metrics[key])} ± {_num(metrics.get(key + '_std'))}"
        if key == "mIoU" and interval is not None:
            text += f" ({CONFIDENCE:.0%} interval {_num(interval[0])}–{_num(interval[1])})"
        scores.append(text)
    lines = [
        f"**{variant}**, {len(seeds)} seed(s) {seeds}, selected seed {metrics.get('selected_seed', '?')}.",
        f"Test (mean ± std over seeds): {'; '.join(scores) or 'no scores'}.",
        f"Majority-class baseline ('{metrics.get('majority_class', '?')}' everywhere): mIoU {_num(metrics.get('majority_mIoU'))}.",
        f"Base: {base}.",
        "Caveats: " + ("; ".join(caveats(metrics)) or "none") + ".",
    ]
    text = "\n".join(lines)
    return text if len(text) <= DESCRIPTION_LIMIT else text[: DESCRIPTION_LIMIT - 1] + "…"
