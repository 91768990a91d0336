"""The trainable model: SAM + one fine-tuning method + a semantic head."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from samsar.config import VariantOptions
from samsar.models.box_prompt import Boxes, boxes_from_labels
from samsar.models.peft.base import PeftMethod
from samsar.models.sam import PATCH_SIZE


@dataclass(frozen=True)
class SegmenterSpec:
    """Everything needed to rebuild a segmenter (recorded in adapter.json)."""

    variant: str  # the method (``parser``); the head is ``options.head`` (``parser-box``: box_prompt)
    backbone: str
    image_size: int
    num_classes: int
    options: VariantOptions
    seed: int
    checkpoint: str | None


class Segmenter(nn.Module):
    """Images ``(B, 3, H, W)`` in ``[0, 1]`` -> class logits ``(B, K, H, W)``.

    The forward pass is split at the end of the ViT trunk (before the neck):
    ``forward(x) == forward_from_trunk(trunk_features(x))``, so methods that train nothing
    before the neck (:attr:`supports_feature_cache`) can reuse cached trunk features. With the
    box-prompt head (:attr:`takes_boxes`) ``forward`` also takes per-image boxes.
    """

    def __init__(
        self,
        sam: nn.Module,
        method: PeftMethod,
        head: nn.Module,
        *,
        base_id: str,
        spec: SegmenterSpec,
        gradient_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        self.sam = sam
        self.method = method
        self.head = head
        self.base_id = base_id
        self.spec = spec
        self.gradient_checkpointing = gradient_checkpointing
        self.merged = False

    @property
    def supports_feature_cache(self) -> bool:
        """True when the trained part starts after the frozen ViT trunk."""
        return self.method.trunk_frozen

    def trunk_features(self, images: torch.Tensor) -> torch.Tensor:
        """ViT trunk output before the neck, ``(B, H/16, W/16, C)``."""
        size = self.spec.image_size
        if images.ndim != 4 or images.shape[1] != 3 or tuple(images.shape[-2:]) != (size, size):
            raise ValueError(f"expected images of shape (B, 3, {size}, {size}) in [0, 1], got {tuple(images.shape)}")
        sam = self.sam
        x = (images * 255.0 - sam.pixel_mean) / sam.pixel_std
        encoder = sam.image_encoder
        tokens = encoder.patch_embed(x)
        prompts = self.method.block_prompts(x, tokens)
        if encoder.pos_embed is not None:
            tokens = tokens + encoder.pos_embed
        use_checkpoint = self.gradient_checkpointing and torch.is_grad_enabled()
        for i, block in enumerate(encoder.blocks):
            if prompts is not None:
                tokens = tokens + prompts[i]
            tokens = checkpoint(block, tokens, use_reentrant=False) if use_checkpoint else block(tokens)
        return tokens

    @property
    def takes_boxes(self) -> bool:
        """True for the box-prompt head (``forward(images, boxes)``, boxes per image)."""
        return self.spec.options.head == "box_prompt"

    def truth_boxes(self, labels: torch.Tensor, generator: np.random.Generator | None = None) -> Boxes | None:
        """Box prompts from label masks ``(B, H, W)`` (None for a head without prompts): around the
        non-background class (index 1), per ``variant_options.box_prompt.boxes``; exact without
        ``generator``, with one each side grows by 0-``box_prompt.jitter`` px (training)."""
        if not self.takes_boxes:
            return None
        cfg = self.spec.options.box_prompt
        return boxes_from_labels(labels, foreground=1, jitter=cfg.jitter if generator is not None else 0,
                                 generator=generator, mode=cfg.boxes)

    def forward_from_trunk(self, features: torch.Tensor, boxes: Boxes | None = None) -> torch.Tensor:
        """Neck (with any neck method) and head on trunk features -> class logits."""
        neck = self.sam.image_encoder.neck
        features = features.to(self.sam.pixel_mean.dtype)  # e.g. fp16 features from the cache
        embeddings = neck(features.permute(0, 3, 1, 2))
        output_size = (features.shape[1] * PATCH_SIZE, features.shape[2] * PATCH_SIZE)
        return self.head(embeddings, self.sam.mask_decoder, self.sam.prompt_encoder, output_size, boxes=boxes)

    def forward(self, images: torch.Tensor, boxes: Boxes | None = None) -> torch.Tensor:
        return self.forward_from_trunk(self.trunk_features(images), boxes)

    def named_trainable_parameters(self) -> dict[str, nn.Parameter]:
        """Every tensor that training updates, by name."""
        return {n: p for n, p in self.named_parameters() if p.requires_grad}

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Only the trained tensors (what an adapter artifact stores)."""
        return {n: p.detach() for n, p in self.named_trainable_parameters().items()}

    def param_groups(self, lr: float) -> list[dict]:
        """Optimizer parameter groups (methods may add groups with their own learning rate)."""
        return self.method.param_groups(self.named_trainable_parameters(), lr)

    def merge(self) -> None:
        """Fold the method into plain SAM layers; ``self.sam`` then loads into stock SAM."""
        if not self.merged:
            self.method.merge(self.sam)
            self.merged = True
