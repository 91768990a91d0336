"""The registry of fine-tuning methods and the segmenter builder.

Adding a method: write ``models/peft/<name>.py`` with a :class:`PeftMethod` subclass and add
it to :data:`VARIANTS`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from samsar.config import VariantOptions
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
    """SAM (from ``checkpoint`` or seeded random init) + method ``variant`` + head.

    Everything starts frozen; the head unfreezes the SAM decoder parts it uses, the method
    what it trains in the encoder. ``device="meta"`` builds shapes only.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant '{variant}'; known: {', '.join(VARIANTS)}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    options = options or VariantOptions()
    sam, base_id = build_sam(backbone, image_size, checkpoint, seed=seed, device=device)
    sam.requires_grad_(False)
    with torch.random.fork_rng(devices=[]), torch.device(device or "cpu"):
        torch.manual_seed(seed)
        head = _build_head(options, sam, num_classes)
        method = VARIANTS[variant](options)
        method.apply(sam)
    spec = SegmenterSpec(
        variant=variant, backbone=backbone, image_size=image_size, num_classes=num_classes, options=options,
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
