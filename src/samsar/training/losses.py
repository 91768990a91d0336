"""Segmentation losses: class-weighted cross-entropy plus soft Dice."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def class_weights_from_counts(counts: Sequence[float], mode: str | Sequence[float]) -> torch.Tensor:
    """Per-class cross-entropy weights from training pixel counts.

    ``mode``: ``"none"`` (all ones), ``"inverse"`` (1 / frequency), ``"inverse_sqrt"``
    (1 / sqrt(frequency)), or an explicit list of weights. Computed weights are normalised so that
    their pixel-weighted mean is 1 (the loss keeps its scale); classes without training pixels get 0.
    """
    counts = np.asarray(counts, dtype=np.float64)
    if not isinstance(mode, str):
        weights = np.asarray(mode, dtype=np.float64)
        if weights.shape != counts.shape:
            raise ValueError(f"train.class_weights has {weights.size} values but there are {counts.size} classes")
        return torch.tensor(weights, dtype=torch.float32)
    if mode == "none":
        return torch.ones(counts.size)
    if counts.sum() <= 0:
        raise ValueError("no labelled training pixels: cannot compute class weights")
    freq = counts / counts.sum()
    present = freq > 0
    power = {"inverse": 1.0, "inverse_sqrt": 0.5}.get(mode)
    if power is None:
        raise ValueError(f"unknown class weight mode '{mode}' (none | inverse | inverse_sqrt | list)")
    weights = np.zeros_like(freq)
    weights[present] = freq[present] ** -power
    weights /= (weights * freq).sum()
    return torch.tensor(weights, dtype=torch.float32)


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int, smooth: float = 1.0) -> torch.Tensor:
    """``1 - mean_c dice_c`` of the softmax probabilities over labelled pixels of the batch."""
    num_classes = logits.shape[1]
    valid = (target != ignore_index).unsqueeze(1)
    probs = logits.float().softmax(dim=1) * valid
    onehot = F.one_hot(target.clamp(0, num_classes - 1), num_classes).permute(0, 3, 1, 2).to(probs.dtype) * valid
    dims = (0, 2, 3)
    intersection = (probs * onehot).sum(dims)
    denominator = probs.sum(dims) + onehot.sum(dims)
    dice = (2 * intersection + smooth) / (denominator + smooth)
    return 1 - dice.mean()


class SegmentationLoss(nn.Module):
    """``CE(weights) + dice_weight * Dice``, both skipping ``ignore_index`` pixels."""

    def __init__(self, class_weights: torch.Tensor | None, ignore_index: int, dice_weight: float = 0.5) -> None:
        super().__init__()
        self.register_buffer("class_weights", class_weights if class_weights is not None else None)
        self.ignore_index = ignore_index
        self.dice_weight = dice_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Scalar loss of logits ``(B, K, H, W)`` against targets ``(B, H, W)``."""
        if not (target != self.ignore_index).any():
            return logits.sum() * 0.0  # keeps the graph (DDP needs every rank to backward)
        ce = F.cross_entropy(logits.float(), target, weight=self.class_weights, ignore_index=self.ignore_index)
        if self.dice_weight == 0:
            return ce
        return ce + self.dice_weight * soft_dice_loss(logits, target, self.ignore_index)
