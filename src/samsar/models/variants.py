"""The registry of fine-tuning methods and the segmenter builder.

Adding a method: write ``models/peft/<name>.py`` with a :class:`PeftMethod` subclass and add
it to :data:`VARIANTS`. A variant name is a method name, optionally with a head suffix:
``<method>-box`` is that method with the box_prompt head (:func:`parse_variant`).
"""

from __future__ import annotations

from pathlib import Path

import torch

from samsar.config import VariantOptions, split_variant_name
from samsar.models.box_prompt import BoxPromptDecoder
from samsar.models.classwise_decoder import ClasswiseMaskDecoder, trained_decoder_parameters
from samsar.models.peft.adapter import Adapter
from samsar.models.peft.base import PeftMethod
from samsar.models.peft.cwsam import Cwsam
from samsar.models.peft.decoder_only import DecoderOnly
from samsar.models.peft.full import Full
from samsar.models.peft.lora import Lora
from samsar.models.peft.parser import Parser
from samsar.models.peft.parser_lora import ParserLora
from samsar.models.sam import build_sam
from samsar.models.segmenter import Segmenter, SegmenterSpec

VARIANTS: dict[str, type[PeftMethod]] = {
    method.name: method for method in (DecoderOnly, Full, Lora, Adapter, Parser, Cwsam, ParserLora)
}


def parse_variant(name: str, options: VariantOptions | None = None) -> tuple[str, str]:
    """``(method, head)`` of a variant name: ``"parser-box"`` -> ``("parser", "box_prompt")``, a
    plain method name -> ``(method, options.head)``. ``ValueError`` naming the known methods otherwise."""
    try:
        method, head = split_variant_name(name)
    except ValueError as exc:
        raise ValueError(f"{exc}; known methods: {', '.join(VARIANTS)}") from None
    if method not in VARIANTS:
        raise ValueError(f"unknown variant '{name}'; known: {', '.join(VARIANTS)} (each also as <method>-box)")
    return method, head or (options or VariantOptions()).head


def build_segmenter(
    variant: str,
    *,
    backbone: str,
    image_size: int,
    num_classes: int,
    checkpoint: Path | str | None = None,
    options: VariantOptions | None = None,
    seed: int = 0,
    gradient_checkpointing: bool = False,
    device: torch.device | str | None = None,
) -> Segmenter:
    """SAM (from ``checkpoint`` or seeded random init) + method + head of ``variant`` (see
    :func:`parse_variant`); the spec records the method and the options with the resolved head.

    Everything starts frozen; the head unfreezes the SAM decoder parts it uses, the method
    what it trains in the encoder. ``device="meta"`` builds shapes only.
    """
    method_name, head_name = parse_variant(variant, options)
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    options = (options or VariantOptions()).model_copy(update={"head": head_name})
    sam, base_id = build_sam(backbone, image_size, checkpoint, seed=seed, device=device)
    sam.requires_grad_(False)
    with torch.random.fork_rng(devices=[]), torch.device(device or "cpu"):
        torch.manual_seed(seed)
        head = _build_head(options, sam, num_classes)
        method = VARIANTS[method_name](options)
        method.apply(sam)
    spec = SegmenterSpec(
        variant=method_name, backbone=backbone, image_size=image_size, num_classes=num_classes, options=options,
        seed=seed, checkpoint=None if checkpoint is None else str(checkpoint),
    )
    return Segmenter(sam, method, head, base_id=base_id, spec=spec, gradient_checkpointing=gradient_checkpointing)


def _build_head(options: VariantOptions, sam: torch.nn.Module, num_classes: int) -> torch.nn.Module:
    if options.head == "box_prompt":
        head = BoxPromptDecoder(num_classes)
    else:
        head = ClasswiseMaskDecoder(num_classes, sam.prompt_encoder.no_mask_embed.weight)
    for p in trained_decoder_parameters(sam.mask_decoder):
        p.requires_grad_(True)
    return head
