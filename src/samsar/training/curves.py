"""Training curves, git-tracked beside the headline metrics: ``results/curves/<variant>.csv`` per
variant (written by ``train``) and ``results/val_curves.csv``, every variant's validation mIoU by
step in one table (written by ``compare``), which the top-level ``plots:`` of ``dvc.yaml`` draws as
one chart so ``dvc plots show`` / ``dvc plots diff`` compare the variants across commits and
experiments.

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


def write_val_curves(params: Params) -> Path:
    """Write ``results/val_curves.csv`` atomically: ``step`` and one ``val_mIoU`` column per variant
    of ``params.variants`` (empty where a variant has no validation at that step). A variant trained
    before train wrote curves gets its column from ``models/<variant>/history.csv``; one not trained
    yet an empty column, as the comparison lists it as not evaluated."""
    from samsar.evaluation.runner import read_history  # matplotlib and skimage: kept out of training's imports

    by_variant = {}
    for variant in params.variants:
        path = curve_path(params, variant)
        if path.is_file():
            with path.open(newline="") as f:
                rows = list(csv.DictReader(f))
        else:
            rows = curve_rows(read_history(params, variant))
        by_variant[variant] = {int(row["step"]): _cell(row["val_mIoU"]) for row in rows}
    steps = sorted({step for curve in by_variant.values() for step in curve})
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["step", *params.variants])
    for step in steps:
        writer.writerow([step, *(by_variant[v].get(step, "") for v in params.variants)])
    path = params.path(RESULTS_DIR) / "val_curves.csv"
    write_text(path, buffer.getvalue())
    return path


def _cell(value: object) -> object:
    """A CSV cell: empty for an undefined value, a float rounded like :func:`write_curve`'s."""
    number = _number(value)
    return "" if number is None else round(number, 6)
