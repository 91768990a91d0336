"""Houlsby bottleneck adapters in every ViT block.

Adapters are children of each block (``blocks.i.adapters.*``) and enter its computation
through forward hooks on the block's ``attn`` and ``mlp`` modules, so SAM's own modules and
state-dict keys stay untouched. Hooks also fire when gradient checkpointing re-runs a block.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from samsar.models.peft.base import PeftMethod


class Bottleneck(nn.Module):
    """``Linear(d -> d / reduction) - GELU - Linear(d / reduction -> d)``."""

    def __init__(self, dim: int, reduction: int, zero_init_up: bool, device: torch.device | None = None) -> None:
        super().__init__()
        if reduction < 1 or dim % reduction:
            raise ValueError(f"adapter reduction {reduction} must divide the encoder width {dim}")
        self.down = nn.Linear(dim, dim // reduction, device=device)
        self.up = nn.Linear(dim // reduction, dim, device=device)
        if zero_init_up:  # start as the identity (Houlsby et al.)
            nn.init.zeros_(self.up.weight)
            nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(F.gelu(self.down(x)))


class BlockAdapters(nn.Module):
    """The two adapters of one block and the hooks that apply them.

    ``after_attention``: ``a' = a + adapter(a)`` on the attention output (inside its skip).
    ``around_mlp``: sequential (Houlsby, ``m + adapter(m)``) or parallel to the MLP on its
    normalised input, scaled (CWSAM, ``m + scale * adapter(ln2(z))``).
    """

    def __init__(self, dim: int, reduction: int, *, mlp_mode: str, parallel_scale: float = 0.5,
                 zero_init_up: bool = True, device: torch.device | None = None) -> None:
        super().__init__()
        if mlp_mode not in ("sequential", "parallel"):
            raise ValueError(f"mlp_mode must be 'sequential' or 'parallel', got {mlp_mode!r}")
        self.attention = Bottleneck(dim, reduction, zero_init_up, device)
        self.mlp = Bottleneck(dim, reduction, zero_init_up, device)
        self.mlp_mode = mlp_mode
        self.parallel_scale = parallel_scale

    def after_attention(self, module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        return output + self.attention(output)

    def around_mlp(self, module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        if self.mlp_mode == "sequential":
            return output + self.mlp(output)
        return output + self.parallel_scale * self.mlp(args[0])


def inject_adapters(encoder: nn.Module, reduction: int, *, mlp_mode: str, zero_init_up: bool) -> list[BlockAdapters]:
    """Add a :class:`BlockAdapters` to every encoder block and hook it in."""
    dim = encoder.patch_embed.proj.out_channels
    device = encoder.patch_embed.proj.weight.device
    added = []
    for block in encoder.blocks:
        adapters = BlockAdapters(dim, reduction, mlp_mode=mlp_mode, zero_init_up=zero_init_up, device=device)
        block.adapters = adapters
        block.attn.register_forward_hook(adapters.after_attention)
        block.mlp.register_forward_hook(adapters.around_mlp)
        added.append(adapters)
    return added


class Adapter(PeftMethod):
    """Houlsby adapters after attention and after the MLP of every block."""

    name = "adapter"

    def apply(self, sam: nn.Module) -> None:
        inject_adapters(sam.image_encoder, self.options.adapter.reduction, mlp_mode="sequential", zero_init_up=True)
