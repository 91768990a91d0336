"""Full fine-tuning: every encoder tensor trains."""

from __future__ import annotations

from torch import nn

from samsar.models.peft.base import PeftMethod


class Full(PeftMethod):
    """Unfreeze the whole image encoder (the decoder side trains in every variant)."""

    name = "full"
    mergeable = True  # nothing to merge

    def apply(self, sam: nn.Module) -> None:
        sam.image_encoder.requires_grad_(True)
