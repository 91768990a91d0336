"""Box-prompt binary head (SAM-PARSER's ship setting): SAM's own decoder, one box per object.

Each box goes through SAM's prompt encoder (frozen) and mask decoder (single-mask output,
mask token 0); the object masks of an image are combined by a per-pixel max. The head returns
two-class logits ``[0, m]`` so that softmax / cross-entropy over them equals a sigmoid / BCE
on the mask logit ``m`` and the K-class interface of the other heads is kept (K = 2:
background, object). Without boxes an image is prompted with one whole-image box.

Training boxes come from the connected components of the label mask (8-connectivity), each
side moved outward by 0-20 px (:func:`boxes_from_labels`), as in the PARSER protocol: a
jittered box always encloses its object.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from skimage.measure import label as connected_components, regionprops
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
    """Boxes of the connected components (8-connectivity) of ``labels == foreground`` per
    image, each side moved *outward* by a random 0-``jitter`` px, clipped to the image.

    Growing only (never shrinking or shifting inward) keeps every box enclosing its object,
    as the box-prompt protocol intends; ``jitter=0`` gives the exact boxes.
    """
    if jitter < 0:
        raise ValueError(f"box jitter must be >= 0 px, got {jitter}")
    generator = generator or np.random.default_rng()
    out = []
    for label in labels.cpu().numpy():
        height, width = label.shape
        boxes = []
        for region in regionprops(connected_components(label == foreground, connectivity=2)):
            row0, col0, row1, col1 = region.bbox  # half-open
            box = np.array([col0, row0, col1 - 1, row1 - 1], dtype=np.float64)
            if jitter:
                grow = generator.integers(0, jitter + 1, size=4)
                box += grow * np.array([-1, -1, 1, 1])
            boxes.append(np.clip(box, 0, [width - 1, height - 1, width - 1, height - 1]).tolist())
        out.append(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
    return out
