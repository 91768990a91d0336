"""The interface every fine-tuning method implements.

A method changes the image encoder of a frozen SAM (inject modules, unfreeze tensors) and
says how its trained tensors are optimised and merged. The mask-decoder side belongs to the
head (:mod:`samsar.models.classwise_decoder`, :mod:`samsar.models.box_prompt`), shared by all
methods and set up by :func:`samsar.models.variants.build_segmenter`.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from samsar.config import VariantOptions


class MergeNotSupportedError(RuntimeError):
    """The method adds modules that cannot be folded into SAM's own weights."""


class PeftMethod(nn.Module):
    """Base class: subclasses set ``name`` and implement :meth:`apply`.

    Modules that belong to the method but not to any SAM layer (e.g. CWSAM's low-frequency
    module) are children of the method object itself.
    """

    name: ClassVar[str]
    #: Whether :meth:`merge` folds the method into plain SAM layers.
    mergeable: ClassVar[bool] = False
    #: True when nothing before the neck trains, so trunk features can be cached.
    trunk_frozen: bool = False

    def __init__(self, options: VariantOptions) -> None:
        super().__init__()
        self.options = options

    def apply(self, sam: nn.Module) -> None:
        """Inject into / unfreeze parts of ``sam``, whose parameters arrive all frozen."""
        raise NotImplementedError

    def block_prompts(self, images: torch.Tensor, patch_tokens: torch.Tensor) -> list[torch.Tensor] | None:
        """Optional per-block additions to the tokens (``images`` normalised, tokens before
        the position embedding). ``None``: the encoder runs unchanged."""
        return None

    def trainable_parameters(self, sam: nn.Module) -> dict[str, nn.Parameter]:
        """The encoder-side tensors this method trains, by name relative to the segmenter."""
        named = {f"sam.image_encoder.{n}": p for n, p in sam.image_encoder.named_parameters()}
        named.update({f"method.{n}": p for n, p in self.named_parameters()})
        return {n: p for n, p in named.items() if p.requires_grad}

    def param_groups(self, named_parameters: dict[str, nn.Parameter], lr: float) -> list[dict]:
        """Optimizer groups for the segmenter's trainable tensors (one group by default)."""
        return [{"params": list(named_parameters.values()), "lr": lr, "name": "default"}]

    def merge(self, sam: nn.Module) -> None:
        """Fold the trained tensors into plain SAM layers (in place)."""
        if not self.mergeable:
            raise MergeNotSupportedError(f"method '{self.name}' adds layers that cannot be merged into SAM")


def replace_module(root: nn.Module, path: str, new: nn.Module) -> None:
    """Put ``new`` at dotted ``path`` under ``root``."""
    parent_path, _, child = path.rpartition(".")
    parent = root.get_submodule(parent_path) if parent_path else root
    setattr(parent, child, new)


def block_linears(encoder: nn.Module, targets: list[str]) -> list[str]:
    """Dotted paths (under ``encoder``) of the block ``nn.Linear`` layers named in ``targets``
    (last name component, e.g. ``qkv``, ``proj``, ``lin1``, ``lin2``)."""
    paths = [
        f"blocks.{i}.{name}"
        for i, block in enumerate(encoder.blocks)
        for name, module in block.named_modules()
        if isinstance(module, nn.Linear) and name.rpartition(".")[2] in targets
    ]
    found = {p.rpartition(".")[2] for p in paths}
    missing = sorted(set(targets) - found)
    if missing:
        raise ValueError(f"no linear layer named {missing} in the encoder blocks; use qkv, proj, lin1 or lin2")
    return paths
