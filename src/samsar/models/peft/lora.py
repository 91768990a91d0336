"""LoRA: low-rank updates ``W + (alpha / r) B A`` on selected block linears.

Targets are whole block linears (``qkv``, ``proj``, ``lin1``, ``lin2``) or the ``q``, ``k``, ``v``
slices of each block's fused ``attn.qkv`` (SAMed's LoRA: a separate ``A``/``B`` pair per chosen
slice, its update added to that slice of the ``qkv`` output only). Rank 4 on ``q`` and ``v`` is
the LoRA row of the SAM-PARSER paper: 12 x 2 x 4 x (768 + 768) = 147,456 parameters on ViT-B.

:class:`LoraLinear` and :class:`LoraQkv` are ``nn.Linear`` layers (same ``weight``/``bias`` keys,
frozen) with the low-rank factors added, so the base keys of the SAM state dict do not move.
``B`` starts at zero: the model starts out identical to SAM.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from samsar.config import LORA_SLICES, split_lora_targets
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

    def delta_weight(self) -> torch.Tensor:
        """``scaling * B A``, shaped like ``weight``."""
        return self.scaling * (self.lora_b @ self.lora_a)

    def merged(self) -> nn.Linear:
        """A plain ``nn.Linear`` holding ``W + scaling * B A``."""
        linear = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None, device=self.weight.device)
        with torch.no_grad():
            linear.weight.copy_(self.weight + self.delta_weight())
            if self.bias is not None:
                linear.bias.copy_(self.bias)
        return linear.requires_grad_(False)


class LoraQkv(LoraLinear):
    """Frozen fused ``qkv`` linear plus one rank-``rank`` update per chosen slice (``q``, ``k``, ``v``).

    ``qkv(x) + [s B_q A_q x, s B_k A_k x, s B_v A_v x]`` with the slices not chosen left at zero;
    the factors are ``lora_a_<slice>`` (``rank x in``) and ``lora_b_<slice>`` (``d x rank``).
    """

    def __init__(self, base: nn.Linear, slices: list[str], rank: int, alpha: float) -> None:
        nn.Module.__init__(self)
        if base.out_features % 3:
            raise ValueError(f"a fused qkv linear has 3 x d outputs, got {base.out_features}")
        unknown = sorted(set(slices) - set(LORA_SLICES))
        if unknown or not slices:
            raise ValueError(f"qkv slices must be among {list(LORA_SLICES)}, got {slices}")
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight, self.bias = base.weight, base.bias
        self.scaling = alpha / rank
        self.width = base.out_features // 3
        self.slices = [s for s in LORA_SLICES if s in slices]
        device = base.weight.device
        for s in self.slices:
            a = nn.Parameter(torch.empty(rank, self.in_features, device=device))
            nn.init.kaiming_uniform_(a, a=math.sqrt(5))
            setattr(self, f"lora_a_{s}", a)
            setattr(self, f"lora_b_{s}", nn.Parameter(torch.zeros(self.width, rank, device=device)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, self.weight, self.bias)
        pieces = list(out.split(self.width, dim=-1))
        for s in self.slices:
            a, b = getattr(self, f"lora_a_{s}"), getattr(self, f"lora_b_{s}")
            update = F.linear(F.linear(x, a.to(x.dtype)), b.to(x.dtype))
            i = LORA_SLICES.index(s)
            pieces[i] = pieces[i] + self.scaling * update
        return torch.cat(pieces, dim=-1)

    def delta_weight(self) -> torch.Tensor:
        delta = torch.zeros_like(self.weight)
        for s in self.slices:
            i = LORA_SLICES.index(s)
            b, a = getattr(self, f"lora_b_{s}"), getattr(self, f"lora_a_{s}")
            delta[i * self.width:(i + 1) * self.width] = self.scaling * (b @ a)
        return delta


def inject_lora(encoder: nn.Module, targets: list[str], rank: int, alpha: float) -> None:
    """Wrap the block linears named in ``targets`` (``qkv``, ``proj``, ``lin1``, ``lin2``) with
    LoRA, and give each block's ``attn.qkv`` one update per slice named (``q``, ``k``, ``v``)."""
    if rank < 1:
        raise ValueError(f"variant_options.lora.rank must be >= 1, got {rank}")
    whole, slices = split_lora_targets(list(targets))
    if whole:
        for path in block_linears(encoder, whole):
            replace_module(encoder, path, LoraLinear(encoder.get_submodule(path), rank, alpha))
    if slices:
        for path in block_linears(encoder, ["qkv"]):
            replace_module(encoder, path, LoraQkv(encoder.get_submodule(path), slices, rank, alpha))


def merge_lora(encoder: nn.Module) -> None:
    """Replace every LoRA layer in ``encoder`` by its merged plain linear."""
    paths = [n for n, m in encoder.named_modules() if isinstance(m, LoraLinear)]
    for path in paths:
        replace_module(encoder, path, encoder.get_submodule(path).merged())


class Lora(PeftMethod):
    """LoRA on the block linears / ``qkv`` slices in ``variant_options.lora.targets``."""

    name = "lora"
    mergeable = True

    def apply(self, sam: nn.Module) -> None:
        opts = self.options.lora
        inject_lora(sam.image_encoder, opts.targets, opts.rank, opts.alpha)

    def merge(self, sam: nn.Module) -> None:
        merge_lora(sam.image_encoder)
