"""Sliding-window prediction with blended overlaps, for arrays and streamed scenes.

A scene is processed in strips: one row of windows at a time. Softmax probabilities of the
windows are accumulated with a smooth weight (see :func:`~samsar.inference.windows.blend_weights`)
into a buffer one window high; rows that no later window touches are finished and handed on.
Memory is bounded by the window batch and the strip buffers (window height x scene width, a
few bytes per class and pixel); reading, scaling and finishing go a column chunk at a time.
The full-scene probability cube is never formed.

A box_prompt model is prompted, per window, with the scene boxes that intersect it (clipped and
in window pixels, see :mod:`samsar.inference.boxes`); a window without any is all background.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from samsar.data.scaling import SarScaler
from samsar.data.tiling import window_starts
from samsar.inference.boxes import window_boxes
from samsar.inference.outputs import NODATA_CLASS
from samsar.inference.windows import blend_weights, window_stride

# Reads the block rows [row0, row1) x columns [col0, col1) of a scene: raw pixels (h, w) or
# (h, w, C), and a validity mask (h, w).
BlockReader = Callable[[int, int, int, int], tuple[np.ndarray, np.ndarray]]
# Columns read, scaled and finished at a time: bounds the temporaries whatever the scene width.
COLUMN_CHUNK = 1024


@dataclass(frozen=True)
class RowBlock:
    """Finished rows ``[row0, row0 + n)`` of a prediction."""

    row0: int
    classes: np.ndarray  # uint8 (n, W); NODATA_CLASS where there is no prediction
    confidence: np.ndarray  # float32 (n, W): max softmax probability; 0 where there is no prediction


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class Predictor:
    """Whole-image prediction with a trained segmenter and its ``adapter.json`` metadata.

    Raw pixels are scaled exactly as in training (``SarScaler.from_dict(meta["scaling"])``: the
    same bands, units, channel composition and clip ranges; pixels at the nodata values configured
    for training are nodata too), cut into overlapping windows of the model's image size, run in batches (bf16 autocast on
    CUDA) and blended per pixel. ``boxes`` (box_prompt models only, required there): ``(N, 4)`` scene
    pixel boxes ``x0, y0, x1, y1``.
    """

    def __init__(
        self,
        segmenter: nn.Module,
        meta: dict,
        device: str | torch.device = "auto",
        batch_size: int = 8,
        overlap: float = 0.25,
        boxes: np.ndarray | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.takes_boxes = bool(getattr(segmenter, "takes_boxes", False))
        if boxes is not None:
            check_boxes(self.takes_boxes, True)
        self.boxes = boxes
        self.device = resolve_device(device)
        self.segmenter = segmenter.to(self.device).eval()
        self.window = int(meta["image_size"])
        self.stride = window_stride(self.window, overlap)
        self.batch_size = batch_size
        self.class_names: list[str] = list(meta["class_names"])
        self.scaler = SarScaler.from_dict(meta["scaling"])
        self._weights = torch.from_numpy(blend_weights(self.window)).to(self.device)
        self.windows_run = 0  # forward passes of single windows so far (windows without valid pixels are skipped)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_bands(self) -> int:
        """Band count of the input files the model was trained on (it may use fewer of them)."""
        return self.scaler.input_bands

    def predict_array(self, raw: np.ndarray, boxes: np.ndarray | None = None) -> np.ndarray:
        """Class map ``uint8 (H, W)`` of an in-memory image ``(H, W)`` or ``(H, W, C)``;
        non-finite pixels and the scaler's nodata values get ``NODATA_CLASS``. ``boxes``: this
        image's pixel boxes (box_prompt models; replaces those given to the constructor)."""
        raw = np.asarray(raw)
        valid = np.isfinite(raw) if raw.ndim == 2 else np.isfinite(raw).all(axis=-1)
        valid &= self.scaler.valid(raw)
        out = np.empty(raw.shape[:2], dtype=np.uint8)
        read = lambda r0, r1, c0, c1: (raw[r0:r1, c0:c1], valid[r0:r1, c0:c1])  # noqa: E731
        for block in self.stream(read, *raw.shape[:2], boxes=boxes):
            out[block.row0 : block.row0 + len(block.classes)] = block.classes
        return out

    @torch.inference_mode()
    def stream(self, read_block: BlockReader, height: int, width: int, boxes: np.ndarray | None = None) -> Iterator[RowBlock]:
        """Predict a ``height x width`` scene read through ``read_block``; yield finished rows top to bottom.
        ``boxes`` (scene pixels) replace the constructor's for this scene."""
        boxes = self.boxes if boxes is None else boxes
        check_boxes(self.takes_boxes, boxes is not None)
        boxes = None if boxes is None else np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        size = self.window
        row_starts = window_starts(height, size, self.stride)
        col_starts = window_starts(width, size, self.stride)
        padded_width = max(width, size)
        # Strip buffers are allocated once and reused: fresh allocations of this size every strip
        # would leave the allocator's heap fragmented and the resident memory growing with the width.
        strip = torch.zeros(3, size, padded_width, device=self.device)
        strip_valid = torch.zeros(size, padded_width, dtype=torch.bool, device=self.device)
        probs = torch.zeros(self.num_classes, size, padded_width, device=self.device)
        weight_sum = torch.zeros(size, padded_width, device=self.device)
        for i, row0 in enumerate(row_starts):
            row1 = min(row0 + size, height)
            self._read_strip(read_block, row0, row1, width, strip, strip_valid)
            self._accumulate(strip, strip_valid, row0, col_starts, probs, weight_sum, boxes)
            done = (row_starts[i + 1] if i + 1 < len(row_starts) else row1) - row0
            yield self._finish(row0, probs[:, :done, :width], weight_sum[:done, :width], strip_valid[:done, :width])
            _shift_up(probs, done)
            _shift_up(weight_sum.unsqueeze(0), done)

    def _read_strip(
        self, read_block: BlockReader, row0: int, row1: int, width: int, strip: torch.Tensor, strip_valid: torch.Tensor
    ) -> None:
        """Fill ``strip`` with rows ``[row0, row1)`` scaled for the model (zeros at nodata and padding)
        and ``strip_valid`` with their validity; read and scaled a column chunk at a time."""
        strip.zero_()
        strip_valid.zero_()
        n = row1 - row0
        for col0 in range(0, width, COLUMN_CHUNK):
            col1 = min(col0 + COLUMN_CHUNK, width)
            raw, valid = read_block(row0, row1, col0, col1)
            valid = valid & self.scaler.valid(raw)  # nodata values configured for training (data.nodata)
            with np.errstate(all="ignore"):  # nodata values (e.g. -9999) may hit logs; they are zeroed next
                scaled = self.scaler.transform(raw)
            scaled *= valid
            strip[:, :n, col0:col1] = torch.from_numpy(scaled)
            strip_valid[:n, col0:col1] = torch.from_numpy(valid)

    def _accumulate(
        self, strip: torch.Tensor, strip_valid: torch.Tensor, row0: int, col_starts: list[int], probs: torch.Tensor,
        weight_sum: torch.Tensor, boxes: np.ndarray | None = None,
    ) -> None:
        """Run the windows of one strip in batches; add their weighted probabilities."""
        size = self.window
        # Windows with no valid pixel contribute nothing: skip their forward pass.
        cols = [c for c in col_starts if bool(strip_valid[:, c : c + size].any())]
        for b in range(0, len(cols), self.batch_size):
            batch_cols = cols[b : b + self.batch_size]
            windows = torch.stack([strip[:, :, c : c + size] for c in batch_cols])
            self.windows_run += len(batch_cols)
            prompts = None if boxes is None else [window_boxes(boxes, row0, c, size) for c in batch_cols]
            for c, p in zip(batch_cols, self.window_probabilities(windows, prompts)):
                probs[:, :, c : c + size] += p * self._weights
                weight_sum[:, c : c + size] += self._weights

    def window_probabilities(self, windows: torch.Tensor, boxes: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Softmax class probabilities ``(B, K, T, T)`` (float32) of scaled windows ``(B, 3, T, T)``
        (``boxes``: per window, in window pixels, for a box_prompt model)."""
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            logits = self.segmenter(windows) if boxes is None else self.segmenter(windows, boxes)
        return logits.float().softmax(dim=1)

    def _finish(self, row0: int, probs: torch.Tensor, weight_sum: torch.Tensor, valid: torch.Tensor) -> RowBlock:
        """Normalised blend -> class and confidence of finished rows, a column chunk at a time."""
        rows, width = weight_sum.shape
        classes = np.empty((rows, width), dtype=np.uint8)
        confidence = np.empty((rows, width), dtype=np.float32)
        for col0 in range(0, width, COLUMN_CHUNK):
            cols = slice(col0, min(col0 + COLUMN_CHUNK, width))
            chunk_conf, chunk_classes = (probs[:, :, cols] / weight_sum[:, cols].clamp_min(1e-12)).max(dim=0)
            keep = valid[:, cols] & (weight_sum[:, cols] > 0)
            classes[:, cols] = torch.where(keep, chunk_classes, NODATA_CLASS).to(torch.uint8).cpu().numpy()
            confidence[:, cols] = torch.where(keep, chunk_conf, 0.0).cpu().numpy()
        return RowBlock(row0, classes, confidence)


def check_boxes(takes_boxes: bool, given: bool) -> None:
    """``ValueError`` unless boxes are given exactly when the model's head takes them."""
    if takes_boxes and not given:
        raise ValueError("the model uses the box_prompt head, which needs box prompts; pass boxes (x0, y0, x1, y1 pixels)")
    if given and not takes_boxes:
        raise ValueError("the model's classwise head takes no box prompts; predict without boxes")


def _shift_up(buffer: torch.Tensor, rows: int) -> None:
    """Move rows ``[rows, H)`` of ``buffer (C, H, W)`` to the top in place and zero the rest.

    Copied in steps of at most ``rows`` rows, so source and destination of each step never overlap.
    """
    height = buffer.shape[1]
    for top in range(0, height - rows, rows):
        step = min(rows, height - rows - top)
        buffer[:, top : top + step] = buffer[:, top + rows : top + rows + step]
    buffer[:, height - rows :] = 0
