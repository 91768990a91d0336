"""Decoder-only baseline: the whole image encoder stays frozen."""

from __future__ import annotations

from torch import nn

from samsar.models.peft.base import PeftMethod


class DecoderOnly(PeftMethod):
    """Train the mask decoder (and head) only, as in both papers' baseline."""

    name = "decoder_only"
    mergeable = True  # nothing to merge
    trunk_frozen = True

    def apply(self, sam: nn.Module) -> None:
        """Nothing to inject: the encoder stays frozen."""
