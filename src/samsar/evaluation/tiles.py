"""Running a segmenter over dataset tiles: logits at tile resolution and a global confusion matrix.

Shared by validation during training and by the test-split evaluation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from samsar.evaluation.metrics import confusion_matrix
from samsar.models.box_prompt import Boxes, scale_boxes


def native_bf16(device: torch.device) -> bool:
    """True where bf16 matmuls and convolutions run in hardware: CUDA, or a CPU with AMX or
    AVX512-BF16 (there bf16 autocast roughly halves a tiny-ViT training step)."""
    if device.type == "cuda":
        return True
    if device.type != "cpu":
        return False
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def autocast_for(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast with ``precision: bf16``, or with ``auto`` where :func:`native_bf16`; fp32 otherwise."""
    if precision == "bf16" or (precision == "auto" and native_bf16(device)):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def fixed_threads(n: int):
    """Run the block with ``n`` torch threads, then restore the previous count.

    On a CPU, one thread keeps results bitwise independent of machine load: with two threads, an
    idle and a busy run of the stand-in pretraining gave different bases here.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def tile_logits(segmenter: nn.Module, images: torch.Tensor, image_size: int, boxes: Boxes | None = None) -> torch.Tensor:
    """Logits ``(B, K, H, W)`` for tiles of any size: inputs are resized to the model's
    ``image_size`` and the logits back to the tile size when the two differ. ``boxes`` (box_prompt
    head only) are in tile pixels and scaled with the tiles."""
    size = tuple(images.shape[-2:])
    if size != (image_size, image_size):
        images = F.interpolate(images, size=(image_size, image_size), mode="bilinear", align_corners=False)
    if boxes is None:
        logits = segmenter(images)
    else:
        logits = segmenter(images, scale_boxes(boxes, size, (image_size, image_size)))
    if tuple(logits.shape[-2:]) != size:
        logits = F.interpolate(logits.float(), size=size, mode="bilinear", align_corners=False)
    return logits


@torch.inference_mode()
def predict_tiles(
    segmenter: nn.Module,
    dataset: Dataset,
    image_size: int,
    device: torch.device,
    batch_size: int = 8,
    precision: str = "auto",
    indices: Sequence[int] | None = None,
):
    """Yield ``(pred uint8 (B, H, W), label (B, H, W), tile_ids)`` numpy batches over ``dataset``.

    A box_prompt segmenter is prompted with the exact boxes of each tile's truth (no jitter).
    """
    subset = dataset if indices is None else Subset(dataset, list(indices))
    was_training = segmenter.training
    segmenter.eval()
    try:
        for batch in DataLoader(subset, batch_size=batch_size, shuffle=False):
            boxes = segmenter.truth_boxes(batch["label"]) if getattr(segmenter, "takes_boxes", False) else None
            with autocast_for(device, precision):
                logits = tile_logits(segmenter, batch["image"].to(device), image_size, boxes)
            pred = logits.argmax(dim=1).to("cpu", torch.uint8).numpy()
            yield pred, batch["label"].numpy(), list(batch["tile_id"])
    finally:
        segmenter.train(was_training)


def dataset_confusion(
    segmenter: nn.Module,
    dataset: Dataset,
    num_classes: int,
    ignore_index: int,
    image_size: int,
    device: torch.device,
    batch_size: int = 8,
    precision: str = "auto",
    indices: Sequence[int] | None = None,
) -> np.ndarray:
    """Global confusion matrix (truth rows, prediction columns) over the tiles of ``dataset``."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    for pred, label, _ in predict_tiles(segmenter, dataset, image_size, device, batch_size, precision, indices):
        cm += confusion_matrix(pred, label, num_classes, ignore_index)
    return cm
