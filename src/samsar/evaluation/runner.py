"""Test-split evaluation of one trained variant over its seeds: metrics JSON (mean ± std), per-tile
confusion matrices, figures."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from samsar.config import Params
from samsar.evaluation.boundaries import BoundaryCounter, mean_boundary_f1
from samsar.evaluation.headline import write_headline
from samsar.evaluation.metrics import confusion_matrix, segmentation_metrics
from samsar.evaluation.objects import SIZE_BUCKETS_DESCRIPTION, ObjectCounter, object_f1_interval
from samsar.evaluation.plots import OverlayTile, plot_confusion, plot_history, plot_overlays
from samsar.evaluation.tiles import fixed_threads, predict_tiles
from samsar.io import finite_or_none, write_json
from samsar.progress import Progress
from samsar.uncertainty import CONFIDENCE, TileConfusions, mean_and_std

FIGURES = "figures"  # under reports/<variant>/
CONFUSION_COUNTS = "confusion_counts.png"
CONFUSION_NORMALIZED = "confusion_normalized.png"
OVERLAYS = "overlays.png"
TRAINING_CURVES = "training_curves.png"
SUMMARY_KEYS = ("mIoU", "mF1", "mF1_reference", "OA", "kappa", "FWIoU")
STD_KEYS = (*SUMMARY_KEYS, "mBF1")  # scalars that get a ``<key>_std`` over seeds
# Per-class dicts that get a ``<key>_std`` dict over seeds (e.g. ``object_f1_std.ship``).
PER_CLASS_STD_KEYS = ("per_class_iou", "object_precision", "object_recall", "object_f1", "object_mean_iou", "boundary_f1")


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


def tiles_path(params: Params, variant: str) -> Path:
    """``metrics/<variant>.tiles.npz``: per-seed, per-test-tile confusion matrices."""
    return params.metrics_path(variant).with_suffix(".tiles.npz")


def seeds_path(params: Params, variant: str) -> Path:
    """``metrics/<variant>.seeds.json``: the test metrics of each seed."""
    return params.metrics_path(variant).with_suffix(".seeds.json")


def aggregate_over_seeds(per_seed: list[dict]) -> dict:
    """Mean over seeds of every number (recursively, per-class dicts included); ``<key>_std`` beside
    each headline key (:data:`STD_KEYS`) and per-class dict (:data:`PER_CLASS_STD_KEYS`). A value
    undefined in every seed (e.g. a class absent from the test split) stays None; other values
    (descriptions) are taken from the first seed."""
    out: dict = {}
    for key, first in per_seed[0].items():
        values = [m.get(key) for m in per_seed]
        if isinstance(first, dict):
            out[key] = aggregate_over_seeds(values)
            if key in PER_CLASS_STD_KEYS:
                out[f"{key}_std"] = {name: mean_and_std([(v or {}).get(name) for v in values])[1] for name in first}
        elif first is None or (isinstance(first, (int, float)) and not isinstance(first, bool)):
            mean, std = mean_and_std(values)
            out[key] = mean
            if key in STD_KEYS:
                out[f"{key}_std"] = std
        else:
            out[key] = first
    return out


def evaluate_variant(params: Params, variant: str) -> dict:
    """Score every seed's adapter of the variant on the test split at full tile resolution.

    Writes ``metrics/<variant>.json``: the headline keys (``mIoU``, ``mF1``, ``OA``, ``kappa``,
    ``FWIoU``, nested ``ignore_background`` forms, ``per_class_iou``) hold means over seeds, with
    ``<key>_std`` beside them and ``seeds``; ``val_mIoU`` is the mean best validation mIoU (what
    selects); ``majority_mIoU`` the majority-class baseline. Beside it, ``<variant>.seeds.json``
    (per-seed values) and ``<variant>.tiles.npz`` (per-seed, per-tile confusion matrices, for
    paired comparisons). Object classes (``evaluate.object_classes``) add per-object scores
    (``object_precision``, ``object_recall``, ``object_f1``, ``object_mean_iou`` per class, each with
    a ``_std`` dict, ``object_f1_interval`` and the ``objects`` counts by size); the other
    non-background classes add boundary F1 (``boundary_f1`` per class and ``mBF1``). Figures go
    under ``reports/<variant>/figures/`` (pooled confusion matrices, overlays of the selected seed,
    training curves). Each seed's MLflow run receives its test metrics; the selected seed's run
    also the figures and both files.
    """
    from samsar.data.dataset import DatasetInfo, TileDataset

    summary = read_train_summary(params, variant)
    runs = summary.get("runs")
    if not runs:
        raise ValueError(f"{params.variant_dir(variant) / 'train_summary.json'}: no per-seed runs; retrain with this samsar version")
    info = DatasetInfo.load(params.processed_dir)
    test = TileDataset(params.processed_dir, "test")
    if len(test) == 0:
        raise ValueError(f"{params.processed_dir}: the test split is empty; check preprocess.split")
    train_counts = TileDataset(params.processed_dir, "train").class_pixel_counts()
    tile_ids = [str(t) for t in test.frame["tile_id"]]
    chosen = overlay_tile_ids(tile_ids, params.evaluate.overlays)

    k = info.num_classes
    confusion = np.zeros((len(runs), len(tile_ids), k, k), dtype=np.int64)
    per_seed, picked, object_counts = [], {}, []
    for s, run in enumerate(runs):
        adapter = params.seed_dir(variant, run["seed"]) / "adapter"
        overlays = picked if run["seed"] == summary["selected_seed"] else None
        objects, boundaries = scorers(params, info.class_names, info.background, info.ignore_index)
        with fixed_threads(1):  # the same scores on an idle or a busy machine
            confusion[s] = _tile_confusions(params, adapter, info, test, chosen, overlays, (objects, boundaries),
                                            label=f"evaluate {variant} seed {run['seed']}")
        metrics = segmentation_metrics(confusion[s].sum(axis=0), info.class_names, info.background)
        object_counts.append(objects.tile_counts())
        per_seed.append({
            **metrics,
            **object_boundary_metrics(objects, boundaries),
            "seed": run["seed"],
            "val_mIoU": run["best_val_mIoU"],
            "steps": run["steps"],
            "stop_reason": run["stop_reason"],
            "cut_short": run["cut_short"],
            "mlflow_run_id": run["mlflow_run_id"],
        })
    tiles = TileConfusions(confusion, tuple(r["seed"] for r in runs), tuple(tile_ids), tuple(info.class_names))
    tiles.save(tiles_path(params, variant))
    # A metric undefined on this test split (e.g. kappa when one class fills it) is written as null, not NaN.
    per_seed = finite_or_none(per_seed)
    write_json(seeds_path(params, variant), {"variant": variant, "seeds": [_seed_row(m) for m in per_seed]})

    majority_index = int(np.argmax(train_counts))
    majority = segmentation_metrics(tiles.majority(majority_index).confusion[0].sum(axis=0), info.class_names, info.background)
    pooled = confusion.sum(axis=(0, 1))
    metrics = {key: value for key, value in aggregate_over_seeds(per_seed).items()
               if key not in ("seed", "steps", "stop_reason", "cut_short", "mlflow_run_id")}
    metrics.update({
        "variant": variant,
        "split": "test",
        "seeds": [r["seed"] for r in runs],
        "selected_seed": summary["selected_seed"],
        "val_mIoU_std": summary.get("best_val_mIoU_std"),
        "steps": [r["steps"] for r in runs],
        "cut_short": any(r["cut_short"] for r in runs),
        "n_test_tiles": len(test),
        "n_pixels": int(pooled.sum() // len(runs)),
        "confusion_matrix": pooled.tolist(),
        "majority_class": info.class_names[majority_index],
        "majority_mIoU": majority["mIoU"],
        "majority": {
            **{key: majority[key] for key in SUMMARY_KEYS},
            **({"ignore_background": {"mIoU": majority["ignore_background"]["mIoU"]}} if info.background else {}),
        },
        "n_trainable_params": summary["n_trainable_params"],
        "n_total_params": summary["n_total_params"],
        "train_seconds": summary["train_seconds"],
        "artifact_bytes": directory_bytes(adapter_dir(params, variant)),
        "base_id": summary["base_id"],
        "object_f1_interval": {name: _interval([c[name] for c in object_counts]) for name in object_counts[0]},
        "object_iou_threshold": params.evaluate.object_iou,
        "object_size_buckets": SIZE_BUCKETS_DESCRIPTION,
        "boundary_tolerance": params.evaluate.boundary_tolerance,
    })
    metrics = finite_or_none(metrics)
    write_json(params.metrics_path(variant), metrics)
    write_headline(params, variant, metrics, tiles)  # results/<variant>.json: what git and `dvc exp show` keep

    out = figures_dir(params, variant)
    figures = [
        plot_confusion(pooled, info.class_names, out / CONFUSION_COUNTS,
                       title=f"{variant}: test confusion (pixels, {len(runs)} seeds pooled)"),
        plot_confusion(pooled, info.class_names, out / CONFUSION_NORMALIZED, normalize=True,
                       title=f"{variant}: test confusion (row-normalised, {len(runs)} seeds pooled)"),
        plot_overlays(_overlay_tiles(picked, test), info.class_names, info.colors, out / OVERLAYS, info.ignore_index),
    ]
    history = read_history(params, variant)
    if history:
        figures.append(plot_history(history, out / TRAINING_CURVES, title=f"{variant}: training"))
    _log_to_runs(params, variant, per_seed, summary["selected_seed"], figures)
    Console(stderr=True).print(
        f"evaluate {variant}: test mIoU {_num(metrics['mIoU'])} ± {_num(metrics['mIoU_std'])} over seeds {metrics['seeds']} "
        f"(majority-class {_num(metrics['majority_mIoU'])}), kappa {_num(metrics['kappa'])} -> {params.metrics_path(variant)}"
    )
    extra = [f"{name} object F1 {_num(f1)} ± {_num(metrics['object_f1_std'][name])}" for name, f1 in metrics["object_f1"].items()]
    if metrics.get("mBF1") is not None:
        extra.append(f"mBF1 {_num(metrics['mBF1'])} ± {_num(metrics['mBF1_std'])}")
    if extra:
        Console(stderr=True).print(f"evaluate {variant}: " + ", ".join(extra))
    return metrics


def scorers(params: Params, class_names: list[str], background: str | None,
            ignore_index: int | None) -> tuple[ObjectCounter, BoundaryCounter]:
    """Fresh per-object scorer (``evaluate.object_classes``) and boundary scorer (every other
    non-background class) for one seed's test tiles."""
    objects = list(params.evaluate.object_classes)
    land_cover = [n for n in class_names if n != background and n not in objects]
    return (ObjectCounter(class_names, background, ignore_index, params.evaluate.object_iou, objects),
            BoundaryCounter(class_names, land_cover, ignore_index, params.evaluate.boundary_tolerance))


def object_boundary_metrics(objects: ObjectCounter, boundaries: BoundaryCounter) -> dict:
    """One seed's object and boundary keys of ``metrics/<variant>.json`` (per-class dicts)."""
    found, edges = objects.result(), boundaries.result()
    counts = ("tp", "fp", "fn", "n_true_objects", "n_predicted_objects", "missed_by_size", "false_by_size")
    return {
        "object_precision": {n: v["precision"] for n, v in found.items()},
        "object_recall": {n: v["recall"] for n, v in found.items()},
        "object_f1": {n: v["f1"] for n, v in found.items()},
        "object_mean_iou": {n: v["mean_matched_iou"] for n, v in found.items()},
        "objects": {n: {key: v[key] for key in counts} for n, v in found.items()},
        "boundary_precision": {n: v["precision"] for n, v in edges.items()},
        "boundary_recall": {n: v["recall"] for n, v in edges.items()},
        "boundary_f1": {n: v["f1"] for n, v in edges.items()},
        "mBF1": mean_boundary_f1(edges),
    }


def _interval(counts: list[np.ndarray]) -> dict | None:
    """Bootstrap interval of one class's seed-mean object F1 from each seed's per-tile counts."""
    found = object_f1_interval(np.stack(counts))
    return None if found is None else {"low": found[0], "high": found[1], "confidence": CONFIDENCE}


def _tile_confusions(params: Params, adapter: Path, info, test, chosen: set[str], overlays: dict | None,
                     counters: tuple = (), label: str = "evaluate") -> np.ndarray:
    """Per-tile confusion matrices ``(T, K, K)`` of one adapter, in test-frame order; fills
    ``overlays`` with (label, prediction) of the ``chosen`` tiles when given and feeds each tile to
    ``counters`` (object / boundary scorers with an ``add(truth, pred)``); progress as ``label``."""
    from samsar.models.artifacts import load_adapter
    from samsar.tracking.provenance import base_checkpoint_path

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    segmenter, meta = load_adapter(adapter, checkpoint=base_checkpoint_path(params), map_location=device)
    if list(meta["class_names"]) != info.class_names:
        raise ValueError(f"{adapter}: trained for classes {meta['class_names']}, the dataset has {info.class_names}; retrain")
    k = info.num_classes
    index = {str(t): i for i, t in enumerate(test.frame["tile_id"])}
    out = np.zeros((len(index), k, k), dtype=np.int64)
    bar = Progress(len(index), label, unit="tile")
    for pred, truth, batch_ids in predict_tiles(
        segmenter, test, meta["image_size"], device, params.evaluate.batch_size, params.train.precision
    ):
        for i, tile in enumerate(batch_ids):
            out[index[str(tile)]] = confusion_matrix(pred[i], truth[i], k, info.ignore_index)
            for counter in counters:
                counter.add(truth[i], pred[i])
            if overlays is not None and tile in chosen:
                overlays[tile] = (truth[i], pred[i])
        bar.update(len(batch_ids))
    bar.close()
    return out


def _num(value: float | None) -> str:
    """A metric for the console: 3 decimals, ``n/a`` when undefined."""
    return "n/a" if value is None else f"{value:.3f}"


def _seed_row(metrics: dict) -> dict:
    """What ``<variant>.seeds.json`` keeps of one seed: headline keys, per-class IoU, training facts."""
    keep = (*SUMMARY_KEYS, "per_class_iou", "seed", "val_mIoU", "steps", "stop_reason", "cut_short", "mlflow_run_id")
    row = {key: metrics[key] for key in keep}
    row |= {key: metrics[key] for key in ("object_f1", "mBF1") if key in metrics}
    if "ignore_background" in metrics:
        row["ignore_background"] = {"mIoU": metrics["ignore_background"]["mIoU"]}
    return row


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
    for key in ("object_precision", "object_recall", "object_f1", "boundary_f1"):
        for name, value in (metrics.get(key) or {}).items():
            if value is not None:
                flat[f"{prefix}{key}_{name.replace(' ', '_')}"] = float(value)
    if metrics.get("mBF1") is not None:
        flat[f"{prefix}mBF1"] = float(metrics["mBF1"])
    if metrics.get("majority_mIoU") is not None:
        flat[f"{prefix}majority_mIoU"] = float(metrics["majority_mIoU"])
    return flat


TILES_ARTIFACT = "evaluation/tiles.npz"  # the per-tile archive in the selected seed's run (read by the promotion gate)


def _log_to_runs(params: Params, variant: str, per_seed: list[dict], selected_seed: int, figures: list[Path]) -> None:
    """Each seed's test metrics into its training run; figures, metrics files and the per-tile
    archive (as ``evaluation/tiles.npz``) into the selected seed's run."""
    if not params.tracking.enabled:
        return
    import tempfile

    from samsar.tracking.runs import resume_run

    for metrics in per_seed:
        if not metrics["mlflow_run_id"]:
            continue
        with resume_run(params, metrics["mlflow_run_id"]) as run:
            run.log_metrics(flat_metrics(metrics))
            if metrics["seed"] != selected_seed:
                continue
            for path in (*figures, params.metrics_path(variant), seeds_path(params, variant)):
                run.log_artifacts(path, "evaluation")
            with tempfile.TemporaryDirectory() as tmp:
                archive = Path(tmp) / Path(TILES_ARTIFACT).name
                shutil.copyfile(tiles_path(params, variant), archive)
                run.log_artifacts(archive, str(Path(TILES_ARTIFACT).parent))
