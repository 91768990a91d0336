"""SAM-PARSER: train only the singular values of selected pretrained weights.

``W = U diag(s) V^T`` (conv kernels reshaped to ``(out, in * kh * kw)``). ``U`` and ``V`` are
frozen, non-persistent buffers recomputed from the frozen base weights whenever the method is
applied, so an artifact stores only ``s``. ``s`` starts at the pretrained singular values: the
model starts out identical to SAM.

Convolutions run factorised (a ``V^T`` convolution, scaling by ``s``, a 1x1 ``U``
convolution): the gradient of ``s`` then needs no kernel-sized weight gradient. Linears
rebuild their weight, which is cheaper for the square block matrices.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from samsar.models.peft.base import PeftMethod, block_linears, replace_module

NECK_CONVS = ("neck.0", "neck.2")
BLOCK_LINEARS = ["qkv", "proj", "lin1", "lin2"]
COEFFICIENT_NAME = "singular_values"


class SvdReconstructed(nn.Module):
    """Shared part of the SVD layers: frozen bases, trainable singular values."""

    def _factorise(self, weight: torch.Tensor) -> None:
        self.weight_shape = tuple(weight.shape)
        matrix = weight.detach().reshape(weight.shape[0], -1)
        if matrix.device.type == "meta":
            rank = min(matrix.shape)
            u = torch.empty(matrix.shape[0], rank, device="meta")
            s = torch.empty(rank, device="meta")
            vh = torch.empty(rank, matrix.shape[1], device="meta")
        else:
            # float64 on the CPU: accurate, and the same bases wherever the model is rebuilt.
            u64, s64, vh64 = torch.linalg.svd(matrix.to("cpu", torch.float64), full_matrices=False)
            u, s, vh = (t.to(matrix.device, torch.float32) for t in (u64, s64, vh64))
        self.register_buffer("u", u, persistent=False)
        self.register_buffer("vh", vh, persistent=False)
        self.singular_values = nn.Parameter(s)

    def reconstructed_weight(self) -> torch.Tensor:
        """``U diag(s) V^T`` in the layer's weight shape."""
        return ((self.u * self.singular_values) @ self.vh).reshape(self.weight_shape)

    def _filled(self, layer: nn.Module) -> nn.Module:
        """``layer`` (a plain layer of this shape) holding the reconstructed weight and this bias, frozen."""
        with torch.no_grad():
            layer.weight.copy_(self.reconstructed_weight())
            if self.bias is not None:
                layer.bias.copy_(self.bias)
        return layer.requires_grad_(False)


class SvdConv2d(SvdReconstructed):
    """A ``Conv2d`` whose kernel is ``U diag(s) V^T``."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        if conv.groups != 1:
            raise ValueError("SAM-PARSER is implemented for ungrouped convolutions only")
        self._factorise(conv.weight)
        self.bias = conv.bias
        self.conv_args = dict(stride=conv.stride, padding=conv.padding, dilation=conv.dilation)
        self.out_channels, self.in_channels, self.kernel_size = conv.out_channels, conv.in_channels, conv.kernel_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rank = self.singular_values.shape[0]
        v_kernel = self.vh.reshape(rank, *self.weight_shape[1:]).to(x.dtype)
        z = F.conv2d(x, v_kernel, None, **self.conv_args) * self.singular_values.to(x.dtype)[:, None, None]
        return F.conv2d(z, self.u[:, :, None, None].to(x.dtype), self.bias)

    def merged(self) -> nn.Conv2d:
        """A plain ``Conv2d`` with the reconstructed kernel."""
        return self._filled(nn.Conv2d(self.in_channels, self.out_channels, self.kernel_size,
                                      bias=self.bias is not None, device=self.u.device, **self.conv_args))


class SvdLinear(SvdReconstructed):
    """An ``nn.Linear`` whose weight is ``U diag(s) V^T``."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self._factorise(linear.weight)
        self.bias = linear.bias
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.reconstructed_weight().to(x.dtype), self.bias)

    def merged(self) -> nn.Linear:
        """A plain ``nn.Linear`` with the reconstructed weight."""
        return self._filled(nn.Linear(self.in_features, self.out_features, bias=self.bias is not None, device=self.u.device))


def parser_targets(encoder: nn.Module, targets: list[str]) -> list[str]:
    """Dotted paths under the image encoder that PARSER factorises."""
    paths = list(NECK_CONVS) if "neck" in targets else []
    if "blocks" in targets:
        paths += block_linears(encoder, BLOCK_LINEARS)
    return paths


def factorise_layers(encoder: nn.Module, paths: list[str]) -> None:
    """Replace each Conv2d / Linear at ``paths`` by its SVD-reconstructed form."""
    for path in paths:
        layer = encoder.get_submodule(path)
        replace_module(encoder, path, SvdConv2d(layer) if isinstance(layer, nn.Conv2d) else SvdLinear(layer))


def merge_factorised(encoder: nn.Module) -> None:
    """Write ``U diag(s) V^T`` back into plain layers everywhere in ``encoder``."""
    paths = [n for n, m in encoder.named_modules() if isinstance(m, SvdReconstructed)]
    for path in paths:
        replace_module(encoder, path, encoder.get_submodule(path).merged())


def coefficient_groups(named_parameters: dict[str, nn.Parameter], lr: float, coefficient_lr: float) -> list[dict]:
    """Singular values in their own group (own learning rate, no weight decay: decay would
    shrink the pretrained spectrum); everything else in the default group."""
    coefficients = [p for n, p in named_parameters.items() if n.endswith(COEFFICIENT_NAME)]
    others = [p for n, p in named_parameters.items() if not n.endswith(COEFFICIENT_NAME)]
    return [
        {"params": others, "lr": lr, "name": "default"},
        {"params": coefficients, "lr": coefficient_lr, "weight_decay": 0.0, "name": "parser_coefficients"},
    ]


class Parser(PeftMethod):
    """SAM-PARSER on the neck convolutions (512 coefficients for ViT-B), optionally also on
    the block linears (``variant_options.parser.targets: [neck, blocks]``)."""

    name = "parser"
    mergeable = True

    @property
    def trunk_frozen(self) -> bool:  # type: ignore[override]
        return "blocks" not in self.options.parser.targets

    def apply(self, sam: nn.Module) -> None:
        factorise_layers(sam.image_encoder, parser_targets(sam.image_encoder, self.options.parser.targets))

    def param_groups(self, named_parameters: dict[str, nn.Parameter], lr: float) -> list[dict]:
        return coefficient_groups(named_parameters, lr, self.options.parser.lr)

    def merge(self, sam: nn.Module) -> None:
        merge_factorised(sam.image_encoder)
