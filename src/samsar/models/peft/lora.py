"""LoRA: low-rank updates ``W + (alpha / r) B A`` on selected block linears.

:class:`LoraLinear` is an ``nn.Linear`` (same ``weight``/``bias`` keys, frozen) with the two
low-rank factors added, so the base keys of the SAM state dict do not move. ``B`` starts at
zero: the model starts out identical to SAM.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from samsar.models.peft.base import PeftMethod, block_linears, replace_module


class LoraLinear(nn.Linear):
    """Frozen linear layer plus a trainable rank-``rank`` update."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float) -> None:
        nn.Module.__init__(self)
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight, self.bias = base.weight, base.bias
        self.scaling = alpha / rank
        self.lora_a = nn.Parameter(torch.empty(rank, self.in_features, device=base.weight.device))
        self.lora_b = nn.Parameter(torch.zeros(self.out_features, rank, device=base.weight.device))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        update = F.linear(F.linear(x, self.lora_a.to(x.dtype)), self.lora_b.to(x.dtype))
        return F.linear(x, self.weight, self.bias) + self.scaling * update

    def merged(self) -> nn.Linear:
        """A plain ``nn.Linear`` holding ``W + scaling * B A``."""
        linear = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None, device=self.weight.device)
        with torch.no_grad():
            linear.weight.copy_(self.weight + self.scaling * (self.lora_b @ self.lora_a))
            if self.bias is not None:
                linear.bias.copy_(self.bias)
        return linear.requires_grad_(False)


def inject_lora(encoder: nn.Module, targets: list[str], rank: int, alpha: float) -> None:
    """Wrap the block linears named in ``targets`` (e.g. ``qkv``, ``proj``) with LoRA."""
    if rank < 1:
        raise ValueError(f"variant_options.lora.rank must be >= 1, got {rank}")
    for path in block_linears(encoder, targets):
        replace_module(encoder, path, LoraLinear(encoder.get_submodule(path), rank, alpha))


def merge_lora(encoder: nn.Module) -> None:
    """Replace every :class:`LoraLinear` in ``encoder`` by its merged plain linear."""
    paths = [n for n, m in encoder.named_modules() if isinstance(m, LoraLinear)]
    for path in paths:
        replace_module(encoder, path, encoder.get_submodule(path).merged())


class Lora(PeftMethod):
    """LoRA on the attention ``qkv`` and ``proj`` linears of every block (configurable)."""

    name = "lora"
    mergeable = True

    def apply(self, sam: nn.Module) -> None:
        opts = self.options.lora
        inject_lora(sam.image_encoder, opts.targets, opts.rank, opts.alpha)

    def merge(self, sam: nn.Module) -> None:
        merge_lora(sam.image_encoder)
