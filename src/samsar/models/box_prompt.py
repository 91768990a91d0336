"""Box-prompt binary head (SAM-PARSER's ship setting): SAM's own decoder, one box per object.

Each box goes through SAM's prompt encoder (frozen) and mask decoder (single-mask output,
mask token 0); the object masks of an image are combined by a per-pixel max. The head returns
two-class logits ``[0, m]`` so that softmax / cross-entropy over them equals a sigmoid / BCE
on the mask logit ``m`` and the K-class interface of the other heads is kept (K = 2:
background, object). An image without boxes (no object) is all background: the constant
mask logit :data:`EMPTY_LOGIT`, no decoder call. Calling the head without boxes is an error.

Boxes come from the truth (:func:`boxes_from_labels`): one per connected component of the
label mask (8-connectivity), or one around all objects of the image; in training each side
moves outward by 0-20 px, as in the PARSER protocol (a jittered box always encloses its
object), in evaluation they are exact.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from skimage.measure import label as connected_components, regionprops
from torch import nn

Boxes = list[torch.Tensor]  # per image: (N, 4) float boxes x0, y0, x1, y1 in input pixels
BOX_MODES = ("per_object", "per_image")
# Mask logit of an image without boxes: background probability 1 - sigmoid(-30) ~ 1 - 1e-13.
EMPTY_LOGIT = -30.0


class BoxPromptDecoder(nn.Module):
    """Binary object masks from box prompts; trains the same SAM decoder parts as the
    classwise head (IoU head unused)."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        if num_classes != 2:
            raise ValueError(f"the box_prompt head predicts background/object: num_classes must be 2, got {num_classes}")
        self.num_classes = num_classes

    def forward(self, image_embeddings: torch.Tensor, mask_decoder: nn.Module, prompt_encoder: nn.Module,
                output_size: tuple[int, int], boxes: Boxes | None = None) -> torch.Tensor:
        """``(B, 256, h, w)`` embeddings + boxes per image -> ``(B, 2, *output_size)`` logits."""
        batch = image_embeddings.shape[0]
        if boxes is None:
            raise ValueError("the box_prompt head needs boxes per image (an empty (0, 4) tensor for an image without "
                             "objects); pass forward(images, boxes), e.g. boxes_from_labels(labels)")
        if len(boxes) != batch:
            raise ValueError(f"got boxes for {len(boxes)} images, expected {batch}")
        dense_pe = prompt_encoder.get_dense_pe().to(image_embeddings.dtype)
        height, width = output_size
        masks = []
        for i in range(batch):
            if len(boxes[i]) == 0:
                masks.append(None)
                continue
            sparse, dense = prompt_encoder(points=None, boxes=boxes[i].to(dense_pe.device, torch.float32), masks=None)
            low_res, _ = mask_decoder(image_embeddings=image_embeddings[i: i + 1], image_pe=dense_pe,
                                      sparse_prompt_embeddings=sparse.to(image_embeddings.dtype),
                                      dense_prompt_embeddings=dense.to(image_embeddings.dtype),
                                      multimask_output=False)
            masks.append(F.interpolate(low_res.amax(dim=0, keepdim=True), size=output_size, mode="bilinear",
                                       align_corners=False)[0])  # (1, H, W): union of the objects
        dtype = next((m.dtype for m in masks if m is not None), image_embeddings.dtype)
        empty = torch.full((1, height, width), EMPTY_LOGIT, dtype=dtype, device=image_embeddings.device)
        if all(m is None for m in masks) and torch.is_grad_enabled():
            # Keep what training updates in the graph (zero gradients): backward() and DDP need it.
            tied = [image_embeddings] + [p for p in mask_decoder.parameters() if p.requires_grad]
            empty = empty + sum(t.sum() for t in tied) * 0.0
        mask_logits = torch.stack([empty if m is None else m for m in masks])
        return torch.cat([torch.zeros_like(mask_logits), mask_logits], dim=1)


def boxes_from_labels(labels: torch.Tensor, foreground: int = 1, jitter: int = 20,
                      generator: np.random.Generator | None = None, mode: str = "per_object") -> Boxes:
    """Boxes around ``labels == foreground`` per image: with ``mode="per_object"`` one per
    connected component (8-connectivity), with ``"per_image"`` one around all of them (none
    for an image without foreground). Each side moves *outward* by a random 0-``jitter`` px,
    clipped to the image.

    Growing only (never shrinking or shifting inward) keeps every box enclosing its object,
    as the box-prompt protocol intends; ``jitter=0`` gives the exact boxes.
    """
    if jitter < 0:
        raise ValueError(f"box jitter must be >= 0 px, got {jitter}")
    if mode not in BOX_MODES:
        raise ValueError(f"box mode must be one of {BOX_MODES}, got {mode!r}")
    generator = generator or np.random.default_rng()
    out = []
    for label in labels.cpu().numpy():
        height, width = label.shape
        objects = label == foreground
        if mode == "per_image":
            regions = [(objects.any(axis=1).nonzero()[0], objects.any(axis=0).nonzero()[0])] if objects.any() else []
            bboxes = [(rows[0], cols[0], rows[-1] + 1, cols[-1] + 1) for rows, cols in regions]
        else:
            bboxes = [region.bbox for region in regionprops(connected_components(objects, connectivity=2))]
        boxes = []
        for row0, col0, row1, col1 in bboxes:  # half-open
            box = np.array([col0, row0, col1 - 1, row1 - 1], dtype=np.float64)
            if jitter:
                grow = generator.integers(0, jitter + 1, size=4)
                box += grow * np.array([-1, -1, 1, 1])
            boxes.append(np.clip(box, 0, [width - 1, height - 1, width - 1, height - 1]).tolist())
        out.append(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
    return out


def scale_boxes(boxes: Boxes, from_size: tuple[int, int], to_size: tuple[int, int]) -> Boxes:
    """Boxes in pixels of a ``from_size`` (H, W) image -> pixels of the image resized to ``to_size``."""
    if tuple(from_size) == tuple(to_size):
        return boxes
    sy, sx = to_size[0] / from_size[0], to_size[1] / from_size[1]
    factor = torch.tensor([sx, sy, sx, sy])
    return [b * factor.to(b) for b in boxes]
