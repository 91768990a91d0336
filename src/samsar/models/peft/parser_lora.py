"""PARSER on the neck plus LoRA in the blocks (the combination SAM-PARSER's authors suggest)."""

from __future__ import annotations

from torch import nn

from samsar.models.peft.base import PeftMethod
from samsar.models.peft.lora import inject_lora, merge_lora
from samsar.models.peft.parser import NECK_CONVS, coefficient_groups, factorise_layers, merge_factorised


class ParserLora(PeftMethod):
    """Singular values of the neck convolutions + LoRA on ``variant_options.lora.targets``."""

    name = "parser_lora"
    mergeable = True

    def apply(self, sam: nn.Module) -> None:
        factorise_layers(sam.image_encoder, list(NECK_CONVS))
        opts = self.options.lora
        inject_lora(sam.image_encoder, opts.targets, opts.rank, opts.alpha)

    def param_groups(self, named_parameters: dict[str, nn.Parameter], lr: float) -> list[dict]:
        return coefficient_groups(named_parameters, lr, self.options.parser.lr)

    def merge(self, sam: nn.Module) -> None:
        merge_factorised(sam.image_encoder)
        merge_lora(sam.image_encoder)
