"""Houlsby bottleneck adapters in the ViT blocks.

Adapters are children of each block (``blocks.i.adapters.*``) and enter its computation
through forward hooks on the block's ``attn`` and ``mlp`` modules, so SAM's own modules and
state-dict keys stay untouched. Hooks also fire when gradient checkpointing re-runs a block.

Size options (``variant_options.adapter``): the bottleneck width (``d / reduction``, or an
absolute ``hidden``), which ``blocks`` get adapters, and their ``placement`` (after attention,
after the MLP, or both). Each adapter has ``(d + 1) * hidden + (hidden + 1) * d`` parameters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from samsar.models.peft.base import PeftMethod


class Bottleneck(nn.Module):
    """``Linear(d -> hidden) - GELU - Linear(hidden -> d)``, ``hidden = d / reduction`` unless given."""

    def __init__(self, dim: int, reduction: int, zero_init_up: bool, device: torch.device | None = None,
                 hidden: int | None = None) -> None:
        super().__init__()
        if hidden is None:
            if reduction < 1 or dim % reduction:
                raise ValueError(f"adapter reduction {reduction} must divide the encoder width {dim}")
            hidden = dim // reduction
        elif hidden < 1:
            raise ValueError(f"adapter hidden width must be >= 1, got {hidden}")
        self.down = nn.Linear(dim, hidden, device=device)
        self.up = nn.Linear(hidden, dim, device=device)
        if zero_init_up:  # start as the identity (Houlsby et al.)
            nn.init.zeros_(self.up.weight)
            nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(F.gelu(self.down(x)))


class BlockAdapters(nn.Module):
    """The adapters of one block and the hooks that apply them.

    ``after_attention``: ``a' = a + adapter(a)`` on the attention output (inside its skip).
    ``around_mlp``: sequential (Houlsby, ``m + adapter(m)``) or parallel to the MLP on its
    normalised input, scaled (CWSAM, ``m + scale * adapter(ln2(z))``).
    ``placement`` keeps only the attention or only the MLP adapter (default: both).
    """

    def __init__(self, dim: int, reduction: int, *, mlp_mode: str, parallel_scale: float = 0.5,
                 zero_init_up: bool = True, device: torch.device | None = None, hidden: int | None = None,
                 placement: str = "both") -> None:
        super().__init__()
        if mlp_mode not in ("sequential", "parallel"):
            raise ValueError(f"mlp_mode must be 'sequential' or 'parallel', got {mlp_mode!r}")
        if placement not in ("both", "attention", "mlp"):
            raise ValueError(f"adapter placement must be 'both', 'attention' or 'mlp', got {placement!r}")
        if placement in ("both", "attention"):
            self.attention = Bottleneck(dim, reduction, zero_init_up, device, hidden)
        if placement in ("both", "mlp"):
            self.mlp = Bottleneck(dim, reduction, zero_init_up, device, hidden)
        self.mlp_mode = mlp_mode
        self.parallel_scale = parallel_scale

    def after_attention(self, module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        return output + self.attention(output)

    def around_mlp(self, module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        if self.mlp_mode == "sequential":
            return output + self.mlp(output)
        return output + self.parallel_scale * self.mlp(args[0])


def inject_adapters(encoder: nn.Module, reduction: int, *, mlp_mode: str, zero_init_up: bool,
                    hidden: int | None = None, blocks: list[int] | None = None,
                    placement: str = "both") -> list[BlockAdapters]:
    """Add a :class:`BlockAdapters` to the encoder blocks listed in ``blocks`` (all by default)
    and hook it in."""
    dim = encoder.patch_embed.proj.out_channels
    device = encoder.patch_embed.proj.weight.device
    depth = len(encoder.blocks)
    chosen = range(depth) if blocks is None else sorted(blocks)
    outside = [i for i in chosen if not 0 <= i < depth]
    if outside:
        raise ValueError(f"variant_options.adapter.blocks {outside} are outside this encoder's blocks 0-{depth - 1}")
    added = []
    for i in chosen:
        block = encoder.blocks[i]
        adapters = BlockAdapters(dim, reduction, mlp_mode=mlp_mode, zero_init_up=zero_init_up, device=device,
                                 hidden=hidden, placement=placement)
        block.adapters = adapters
        if hasattr(adapters, "attention"):
            block.attn.register_forward_hook(adapters.after_attention)
        if hasattr(adapters, "mlp"):
            block.mlp.register_forward_hook(adapters.around_mlp)
        added.append(adapters)
    return added


class Adapter(PeftMethod):
    """Houlsby adapters after attention and/or after the MLP of the chosen blocks (all by default)."""

    name = "adapter"

    def apply(self, sam: nn.Module) -> None:
        opts = self.options.adapter
        inject_adapters(sam.image_encoder, opts.reduction, mlp_mode="sequential", zero_init_up=True,
                        hidden=opts.hidden, blocks=opts.blocks, placement=opts.placement)
