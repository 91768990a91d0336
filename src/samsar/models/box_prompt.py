"""Box-prompt binary head (SAM-PARSER's ship setting): SAM's own decoder, one box per object.

Each box goes through SAM's prompt encoder (frozen) and mask decoder (single-mask output,
mask token 0); the object masks of an image are combined by a per-pixel max. The head returns
two-class logits ``[0, m]`` so that softmax / cross-entropy over them equals a sigmoid / BCE
on the mask logit ``m`` and the K-class interface of the other heads is kept (K = 2:
background, object). Without boxes an image is prompted with one whole-image box.

Training boxes come from the connected components of the label mask, each side jittered by
0-20 px (:func:`boxes_from_labels`), as in the PARSER paper.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import nn

Boxes = list[torch.Tensor]  # per image: (N, 4) float boxes x0, y0, x1, y1 in input pixels


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
        if boxes is not None and len(boxes) != batch:
            raise ValueError(f"got boxes for {len(boxes)} images, expected {batch}")
        height, width = prompt_encoder.input_image_size
        whole = torch.tensor([[0.0, 0.0, width - 1.0, height - 1.0]], device=image_embeddings.device)
        dense_pe = prompt_encoder.get_dense_pe().to(image_embeddings.dtype)
        masks = []
        for i in range(batch):
            image_boxes = whole if boxes is None or len(boxes[i]) == 0 else boxes[i].to(whole)
            sparse, dense = prompt_encoder(points=None, boxes=image_boxes, masks=None)
            low_res, _ = mask_decoder(image_embeddings=image_embeddings[i: i + 1], image_pe=dense_pe,
                                      sparse_prompt_embeddings=sparse.to(image_embeddings.dtype),
                                      dense_prompt_embeddings=dense.to(image_embeddings.dtype),
                                      multimask_output=False)
            masks.append(low_res.amax(dim=0))  # (1, h', w'): union of the objects
        mask_logits = F.interpolate(torch.stack(masks), size=output_size, mode="bilinear", align_corners=False)
        return torch.cat([torch.zeros_like(mask_logits), mask_logits], dim=1)


def boxes_from_labels(labels: torch.Tensor, foreground: int = 1, jitter: int = 20,
                      generator: np.random.Generator | None = None) -> Boxes:
    """Boxes of the connected components of ``labels == foreground`` per image, each side
    moved outward or inward by a random 0-``jitter`` px (clamped to the image)."""
    generator = generator or np.random.default_rng()
    out = []
    for label in labels.cpu().numpy():
        height, width = label.shape
        components, _ = ndimage.label(label == foreground)
        boxes = []
        for rows, cols in ndimage.find_objects(components):
            box = np.array([cols.start, rows.start, cols.stop - 1, rows.stop - 1], dtype=np.float64)
            box += generator.integers(-jitter, jitter + 1, size=4) if jitter else 0
            box = np.clip(box, 0, [width - 1, height - 1, width - 1, height - 1])
            boxes.append([min(box[0], box[2]), min(box[1], box[3]), max(box[0], box[2]), max(box[1], box[3])])
        out.append(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
    return out
