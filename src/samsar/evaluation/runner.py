"""Test-split evaluation of one trained variant: metrics JSON, confusion matrices, overlays."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from samsar.config import Params
from samsar.evaluation.metrics import confusion_matrix, segmentation_metrics
from samsar.evaluation.plots import OverlayTile, plot_confusion, plot_history, plot_overlays
from samsar.evaluation.tiles import predict_tiles
from samsar.io import write_json

FIGURES = "figures"  # under reports/<variant>/
CONFUSION_COUNTS = "confusion_counts.png"
CONFUSION_NORMALIZED = "confusion_normalized.png"
OVERLAYS = "overlays.png"
TRAINING_CURVES = "training_curves.png"
SUMMARY_KEYS = ("mIoU", "mF1", "OA", "kappa", "FWIoU")


def adapter_dir(params: Params, variant: str) -> Path:
    """Where ``samsar train`` saved the variant's adapter."""
    return params.variant_dir(variant) / "adapter"


def figures_dir(params: Params, variant: str) -> Path:
    """``reports/<variant>/figures``: the evaluation figures the model card shows."""
    return params.report_dir(variant) / FIGURES


def read_train_summary(params: Params, variant: str) -> dict:
    """``models/<variant>/train_summary.json``; names the fix when it is missing."""
    path = params.variant_dir(variant) / "train_summary.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; run `samsar train --variant {variant}` first")
    return json.loads(path.read_text())


def directory_bytes(path: Path) -> int:
    """Total size of the files under ``path``."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def majority_confusion(test_cm: np.ndarray, train_counts: np.ndarray) -> np.ndarray:
    """Confusion matrix of predicting the training split's most frequent class everywhere."""
    cm = np.zeros_like(test_cm)
    cm[:, int(np.argmax(train_counts))] = test_cm.sum(axis=1)
    return cm


def overlay_tile_ids(tile_ids: list[str], n: int) -> set[str]:
    """A fixed, evenly spread choice of ``n`` test tiles (same tiles for every variant)."""
    ordered = sorted(tile_ids)
    if n <= 0 or not ordered:
        return set()
    picks = np.linspace(0, len(ordered) - 1, min(n, len(ordered))).round().astype(int)
    return {ordered[i] for i in picks}


def evaluate_variant(params: Params, variant: str) -> dict:
    """Score the variant's adapter on the test split at full tile resolution.

    Writes ``metrics/<variant>.json`` (top level: all-classes form; nested ``ignore_background``
    and ``ignore_background_lenient`` forms; ``majority_mIoU``) and the figures under
    ``reports/<variant>/figures/`` (confusion matrices, overlays, training curves); adds the test
    metrics and figures to the training's MLflow run.
    """
    from samsar.data.dataset import DatasetInfo, TileDataset
    from samsar.models.artifacts import load_adapter
    from samsar.tracking.provenance import base_checkpoint_path

    summary = read_train_summary(params, variant)
    adapter = adapter_dir(params, variant)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    segmenter, meta = load_adapter(adapter, checkpoint=base_checkpoint_path(params), map_location=device)
    info = DatasetInfo.load(params.processed_dir)
    if list(meta["class_names"]) != info.class_names:
        raise ValueError(f"{adapter}: trained for classes {meta['class_names']}, the dataset has {info.class_names}; retrain")
    test = TileDataset(params.processed_dir, "test")
    if len(test) == 0:
        raise ValueError(f"{params.processed_dir}: the test split is empty; check preprocess.split")
    train_counts = TileDataset(params.processed_dir, "train").class_pixel_counts()

    k = info.num_classes
    cm = np.zeros((k, k), dtype=np.int64)
    chosen = overlay_tile_ids(test.frame["tile_id"].tolist(), params.evaluate.overlays)
    picked: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for pred, label, tile_ids in predict_tiles(
        segmenter, test, meta["image_size"], device, params.evaluate.batch_size, params.train.precision
    ):
        cm += confusion_matrix(pred, label, k, info.ignore_index)
        picked.update({t: (label[i], pred[i]) for i, t in enumerate(tile_ids) if t in chosen})
    overlays = _overlay_tiles(picked, test)

    metrics = segmentation_metrics(cm, info.class_names, info.background)
    majority = segmentation_metrics(majority_confusion(cm, train_counts), info.class_names, info.background)
    metrics.update({
        "variant": variant,
        "split": "test",
        "n_test_tiles": len(test),
        "confusion_matrix": cm.tolist(),
        "majority_class": info.class_names[int(np.argmax(train_counts))],
        "majority_mIoU": majority["mIoU"],
        "majority": {
            **{key: majority[key] for key in SUMMARY_KEYS},
            **({"ignore_background": {"mIoU": majority["ignore_background"]["mIoU"]}} if info.background else {}),
        },
        "n_trainable_params": summary["n_trainable_params"],
        "n_total_params": summary["n_total_params"],
        "train_seconds": summary["train_seconds"],
        "artifact_bytes": directory_bytes(adapter),
        "base_id": meta["base_id"],
    })
    write_json(params.metrics_path(variant), metrics)

    out = figures_dir(params, variant)
    figures = [
        plot_confusion(cm, info.class_names, out / CONFUSION_COUNTS, title=f"{variant}: test confusion (pixels)"),
        plot_confusion(cm, info.class_names, out / CONFUSION_NORMALIZED, normalize=True,
                       title=f"{variant}: test confusion (row-normalised)"),
        plot_overlays(overlays, info.class_names, info.colors, out / OVERLAYS, info.ignore_index),
    ]
    history = read_history(params, variant)
    if history:
        figures.append(plot_history(history, out / TRAINING_CURVES, title=f"{variant}: training"))
    _log_to_run(params, summary.get("mlflow_run_id"), metrics, figures)
    Console(stderr=True).print(
        f"evaluate {variant}: test mIoU {metrics['mIoU']:.3f} (majority-class {metrics['majority_mIoU']:.3f}), "
        f"OA {metrics['OA']:.3f}, kappa {metrics['kappa']:.3f} -> {params.metrics_path(variant)}"
    )
    return metrics


def read_history(params: Params, variant: str) -> list[dict]:
    """Rows of ``models/<variant>/history.csv`` (empty when absent)."""
    path = params.variant_dir(variant) / "history.csv"
    if not path.is_file():
        return []
    with path.open() as f:
        return list(csv.DictReader(f))


def _overlay_tiles(picked: dict[str, tuple[np.ndarray, np.ndarray]], test) -> list[OverlayTile]:
    """Overlay rows with the SAR image of each chosen tile (read again: only a handful)."""
    index = {t: i for i, t in enumerate(test.frame["tile_id"])}
    return [OverlayTile(t, test[index[t]]["image"].numpy(), *picked[t]) for t in sorted(picked)]


def flat_metrics(metrics: dict, prefix: str = "test_") -> dict[str, float]:
    """Scalar metrics of all three forms as flat MLflow keys (e.g. ``test_ignore_background_mIoU``)."""
    flat: dict[str, float] = {}
    for form in ("", "ignore_background", "ignore_background_lenient"):
        block = metrics.get(form, {}) if form else metrics
        head = f"{prefix}{form}_" if form else prefix
        for key in SUMMARY_KEYS:
            if key in block and block[key] is not None and np.isfinite(block[key]):
                flat[head + key] = float(block[key])
        if not form:
            for name, value in block["per_class_iou"].items():
                if value is not None:
                    flat[f"{prefix}iou_{name.replace(' ', '_')}"] = float(value)
    flat[f"{prefix}majority_mIoU"] = float(metrics["majority_mIoU"])
    return flat


def _log_to_run(params: Params, run_id: str | None, metrics: dict, figures: list[Path]) -> None:
    if not (params.tracking.enabled and run_id):
        return
    from samsar.tracking.runs import resume_run

    with resume_run(params, run_id) as run:
        run.log_metrics(flat_metrics(metrics))
        for figure in figures:
            run.log_artifacts(figure, "evaluation")
        run.log_artifacts(params.metrics_path(metrics["variant"]), "evaluation")
