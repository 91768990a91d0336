"""CWSAM (ClassWise-SAM-Adapter, Pu et al. 2024): adapters + low-frequency prompts.

The classwise mask decoder, the third part of CWSAM, is the default head of every variant
(:mod:`samsar.models.classwise_decoder`).

Adapters: ``a' = a + up(gelu(down(a)))`` on the attention output, and a parallel adapter on
the MLP input scaled by 0.5. Low-frequency module: the centred square of the shifted
spectrum covering ``low_freq_ratio`` of its area is kept, ``x_low = |Re ifft2(...)|`` (the
reference takes the real part before the absolute value); it is patch-embedded to ``d/32``
channels, added to a ``d/32`` projection of the frozen patch embedding, and turned into one
prompt per block, ``shared_up(gelu(lin_i(h + e)))``, added to the tokens before block ``i``.

``mode="faithful"`` reproduces the reference's token-order quirk: it reshapes the NHWC patch
embedding as if it were NCHW before the projection, which scrambles positions and channels.
``mode="fixed"`` (default) projects each token in place.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from samsar.models.classwise_decoder import reference_conv_init
from samsar.models.peft.adapter import inject_adapters
from samsar.models.peft.base import PeftMethod

PROMPT_REDUCTION = 32


def low_pass(images: torch.Tensor, ratio: float) -> torch.Tensor:
    """Keep the centred square of the spectrum covering ``ratio`` of its area."""
    h, w = images.shape[-2:]
    half = int(math.sqrt(h * w * ratio) // 2)
    mask = torch.zeros(h, w, device=images.device)
    mask[h // 2 - half: h // 2 + half, w // 2 - half: w // 2 + half] = 1.0
    spectrum = torch.fft.fftshift(torch.fft.fft2(images.float()), dim=(-2, -1))
    filtered = torch.fft.ifft2(torch.fft.ifftshift(spectrum * mask, dim=(-2, -1)))
    return filtered.real.abs().to(images.dtype)


class LowFrequencyPrompts(nn.Module):
    """Per-block prompts from the low-frequency image and the patch embedding."""

    def __init__(self, dim: int, depth: int, patch_size: int, ratio: float, faithful: bool,
                 device: torch.device | None = None) -> None:
        super().__init__()
        hidden = dim // PROMPT_REDUCTION
        self.ratio = ratio
        self.faithful = faithful
        self.image_embed = nn.Conv2d(3, hidden, kernel_size=patch_size, stride=patch_size, device=device)
        self.token_embed = nn.Linear(dim, hidden, device=device)
        self.block_mlps = nn.ModuleList(nn.Linear(hidden, hidden, device=device) for _ in range(depth))
        self.shared_up = nn.Linear(hidden, dim, device=device)

    def forward(self, images: torch.Tensor, patch_tokens: torch.Tensor) -> list[torch.Tensor]:
        b, h, w, c = patch_tokens.shape
        handcrafted = self.image_embed(low_pass(images, self.ratio)).permute(0, 2, 3, 1)
        if self.faithful:
            scrambled = patch_tokens.reshape(b, c, h * w).permute(0, 2, 1)
            embedded = self.token_embed(scrambled).reshape(b, h, w, -1)
        else:
            embedded = self.token_embed(patch_tokens)
        mixed = handcrafted + embedded
        return [self.shared_up(F.gelu(mlp(mixed))) for mlp in self.block_mlps]


def reference_init(module: nn.Module) -> None:
    """The reference's initialisation of the low-frequency prompt generator: truncated normal
    (std 0.02) linears, He-normal convs (fan-out), zero biases. Not applied to the adapters."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Conv2d):
            reference_conv_init(m)


class Cwsam(PeftMethod):
    """CWSAM's encoder side: adapters in every block and low-frequency prompts."""

    name = "cwsam"

    def apply(self, sam: nn.Module) -> None:
        encoder = sam.image_encoder
        proj = encoder.patch_embed.proj
        opts = self.options.cwsam
        adapters = inject_adapters(encoder, opts.reduction, mlp_mode="parallel", zero_init_up=False)
        self.low_frequency = LowFrequencyPrompts(
            proj.out_channels, len(encoder.blocks), proj.kernel_size[0], opts.low_freq_ratio,
            faithful=opts.mode == "faithful", device=proj.weight.device,
        )
        # As the reference: only the prompt generator gets its trunc-normal / He-normal init;
        # the block adapters keep PyTorch's nn.Linear defaults (kaiming-uniform, uniform bias).
        reference_init(self.low_frequency)

    def block_prompts(self, images: torch.Tensor, patch_tokens: torch.Tensor) -> list[torch.Tensor]:
        return self.low_frequency(images, patch_tokens)
