"""Evaluation figures (PNG): confusion matrices and prediction overlays.

Built on ``matplotlib.figure.Figure`` directly (no pyplot state, no display backend needed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from samsar.io import atomic_path


@dataclass(frozen=True)
class OverlayTile:
    """One test tile for the overlay figure: SAR image ``(3, H, W)`` in [0, 1], truth and prediction."""

    tile_id: str
    image: np.ndarray
    truth: np.ndarray
    pred: np.ndarray


def _save(fig: Figure, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return path


def plot_confusion(cm: np.ndarray, class_names: Sequence[str], path: Path, normalize: bool = False, title: str = "") -> Path:
    """Confusion matrix heat map (truth rows, prediction columns); ``normalize``: rows sum to 1."""
    cm = np.asarray(cm, dtype=np.float64)
    if normalize:
        rows = cm.sum(axis=1, keepdims=True)
        values = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    else:
        values = cm
    k = len(class_names)
    fig = Figure(figsize=(1.1 * k + 2.5, 1.0 * k + 1.8))
    ax = fig.add_subplot()
    im = ax.imshow(values, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(k), class_names, rotation=45, ha="right")
    ax.set_yticks(range(k), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("truth")
    ax.set_title(title or ("confusion matrix (row-normalised)" if normalize else "confusion matrix (pixels)"))
    threshold = values.max() / 2 if values.size else 0
    for i in range(k):
        for j in range(k):
            text = f"{values[i, j]:.2f}" if normalize else f"{int(values[i, j]):,}"
            ax.text(j, i, text, ha="center", va="center", fontsize=7, color="white" if values[i, j] > threshold else "black")
    return _save(fig, path)


def class_colormap(colors: Sequence[Sequence[int]]) -> ListedColormap:
    """Colormap indexed by class id, from the dataset's RGB colours."""
    return ListedColormap(np.asarray(colors, dtype=np.float64) / 255.0)


def plot_overlays(
    tiles: Sequence[OverlayTile], class_names: Sequence[str], colors: Sequence[Sequence[int]], path: Path, ignore_index: int
) -> Path:
    """One row per tile: SAR image, ground truth, prediction, and errors (red) over the image."""
    cmap = class_colormap(colors)
    k = len(class_names)
    n = max(len(tiles), 1)
    fig = Figure(figsize=(12, 3.1 * n))
    axes = fig.subplots(n, 4, squeeze=False)
    for row, tile in zip(axes, tiles):
        gray = tile.image[0]
        truth = np.ma.masked_equal(tile.truth.astype(np.int64), ignore_index)
        wrong = (tile.truth != tile.pred) & (tile.truth != ignore_index)
        error_rgb = np.stack([gray, gray, gray], axis=-1)
        error_rgb[wrong] = (1.0, 0.0, 0.0)
        row[0].imshow(gray, cmap="gray", vmin=0, vmax=1)
        row[0].set_ylabel(tile.tile_id, fontsize=7)
        row[1].imshow(truth, cmap=cmap, vmin=-0.5, vmax=k - 0.5, interpolation="nearest")
        row[2].imshow(tile.pred, cmap=cmap, vmin=-0.5, vmax=k - 0.5, interpolation="nearest")
        row[3].imshow(error_rgb, interpolation="nearest")
        accuracy = 1.0 - wrong.sum() / max((tile.truth != ignore_index).sum(), 1)
        for ax, title in zip(row, ("SAR (scaled)", "truth", "prediction", f"errors (pixel accuracy {accuracy:.1%})")):
            ax.set_title(title, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
    handles = [Patch(color=np.asarray(c) / 255.0, label=name) for name, c in zip(class_names, colors)]
    fig.legend(handles=handles, loc="lower center", ncol=min(k, 6), frameon=False)
    return _save(fig, path)


def plot_history(history: Sequence[dict], path: Path, title: str = "") -> Path:
    """Training loss and validation mIoU per epoch (rows of ``history.csv``), one line per seed."""
    fig = Figure(figsize=(7, 3.2))
    loss_ax, miou_ax = fig.subplots(1, 2)
    seeds = sorted({r.get("seed", "") for r in history}, key=str)
    for seed in seeds:
        rows = [r for r in history if r.get("seed", "") == seed]
        epochs = [int(r["epoch"]) for r in rows]
        label = f"seed {seed}" if seed != "" else None
        loss_ax.plot(epochs, [float(r["train_loss"]) for r in rows], marker=".", label=label)
        miou_ax.plot(epochs, [float(r["val_mIoU"]) for r in rows], marker=".", label=label)
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("training loss")
    miou_ax.set_xlabel("epoch")
    miou_ax.set_ylabel("validation mIoU")
    if len(seeds) > 1:
        miou_ax.legend(fontsize="small")
    for ax in (loss_ax, miou_ax):
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)
