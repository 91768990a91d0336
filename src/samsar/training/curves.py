"""Training curve of a variant: ``results/curves/<variant>.csv``, git-tracked beside the headline
metrics so ``dvc plots show`` / ``dvc plots diff`` overlay every variant's validation mIoU by step
(the top-level ``plots:`` of ``dvc.yaml``) across commits and experiments.

One row per validation step: the mean over the seeds that reached it of ``val_mIoU`` and
``train_loss``, the standard deviation of ``val_mIoU`` and the number of seeds. An undefined value
(no validation split, one seed for the std) is an empty cell, never NaN.
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path

from samsar.config import Params
from samsar.evaluation.headline import RESULTS_DIR
from samsar.io import write_text
from samsar.uncertainty import mean_and_std

CURVE_FIELDS = ("step", "epoch", "val_mIoU", "val_mIoU_std", "train_loss", "n_seeds")


def curve_path(params: Params, variant: str) -> Path:
    """``results/curves/<variant>.csv``."""
    return params.path(RESULTS_DIR) / "curves" / f"{variant}.csv"


def _number(value: object) -> float | None:
    try:
        number = float(value)  # history.csv rows hold strings
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def curve_rows(history: Iterable[Mapping[str, object]]) -> list[dict]:
    """Rows of ``history.csv`` (every seed) -> one row per step, means over seeds."""
    by_step: dict[int, list[Mapping[str, object]]] = defaultdict(list)
    for row in history:
        by_step[int(float(row["step"]))].append(row)
    out = []
    for step in sorted(by_step):
        rows = by_step[step]
        val, val_std = mean_and_std([_number(r.get("val_mIoU")) for r in rows])
        loss, _ = mean_and_std([_number(r.get("train_loss")) for r in rows])
        out.append({
            "step": step,
            "epoch": min(int(float(r["epoch"])) for r in rows),
            "val_mIoU": val,
            "val_mIoU_std": val_std if len(rows) > 1 else None,
            "train_loss": loss,
            "n_seeds": len(rows),
        })
    return out


def write_curve(params: Params, variant: str, history: Iterable[Mapping[str, object]]) -> Path:
    """Write ``results/curves/<variant>.csv`` atomically from the variant's history rows."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CURVE_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in curve_rows(history):
        writer.writerow({key: ("" if value is None else round(value, 6) if isinstance(value, float) else value)
                         for key, value in row.items()})
    path = curve_path(params, variant)
    write_text(path, buffer.getvalue())
    return path
