"""CWSAM's classwise mask decoder: K class logit maps from SAM's mask decoder, no prompts.

SAM's two-way transformer and output upscaling run as usual with an empty sparse prompt and a
learned "no mask" dense prompt. The upscaled transformer output and the upscaled
pre-transformer features are concatenated (64 channels) and turned into 32 channels per class;
the hypernetwork vector of mask token 0 is dotted with each class's 32 channels.

The module owns only what it adds (class head, no-mask embedding); SAM's mask decoder and
prompt encoder are passed in at call time so the SAM state dict keeps the official layout.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from samsar.models.sam import import_sam_modeling

HYPER_DIM = 32  # SAM's hypernetwork output width (transformer_dim // 8)


def trained_decoder_parameters(mask_decoder: nn.Module) -> list[nn.Parameter]:
    """SAM decoder parameters the heads train: all but the IoU head and the hypernetwork MLPs
    of mask tokens 1-3, which never receive a gradient when only mask token 0 is read."""
    used = [mask_decoder.iou_token, mask_decoder.mask_tokens, mask_decoder.transformer,
            mask_decoder.output_upscaling, mask_decoder.output_hypernetworks_mlps[0]]
    return [p for module in used for p in module.parameters()]


def reference_conv_init(conv: nn.Conv2d) -> None:
    """The CWSAM reference's conv init (its class head and its prompt generator): He-normal on the
    fan-out, normal(0, sqrt(2 / fan_out)) with fan_out = out_channels * kh * kw, and a zero bias."""
    fan_out = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]
    nn.init.normal_(conv.weight, 0.0, math.sqrt(2.0 / fan_out))
    nn.init.zeros_(conv.bias)


class ClasswiseMaskDecoder(nn.Module):
    """Prompt-free semantic head on top of SAM's mask decoder."""

    def __init__(self, num_classes: int, no_mask_embed: torch.Tensor, light: bool = False) -> None:
        """``light`` swaps the class head for one 1x1 convolution at input/4 (about 50x fewer
        head FLOPs): not CWSAM's head; the stand-in base's pretraining uses it, since only the SAM
        weights it trains are kept."""
        super().__init__()
        layer_norm_2d = import_sam_modeling().common.LayerNorm2d
        self.num_classes = num_classes
        channels = 2 * HYPER_DIM
        self.no_mask_embed = nn.Parameter(no_mask_embed.detach().clone().reshape(1, -1))
        if light:
            self.class_head = nn.Sequential(nn.Conv2d(channels, HYPER_DIM * num_classes, kernel_size=1), nn.GELU())
        else:
            self.class_head = nn.Sequential(
                nn.ConvTranspose2d(channels, channels, kernel_size=2, stride=2),
                layer_norm_2d(channels),
                nn.GELU(),
                nn.Conv2d(channels, HYPER_DIM * num_classes, kernel_size=7, stride=2, padding=3),
                nn.GELU(),
            )
            reference_conv_init(self.class_head[3])

    def forward(
        self,
        image_embeddings: torch.Tensor,
        mask_decoder: nn.Module,
        prompt_encoder: nn.Module,
        output_size: tuple[int, int],
        boxes: None = None,
    ) -> torch.Tensor:
        """``(B, 256, h, w)`` image embeddings -> ``(B, K, *output_size)`` class logits."""
        if boxes is not None:
            raise ValueError("the classwise head takes no prompts; boxes need variant_options.head: box_prompt")
        batch, channels, h, w = image_embeddings.shape
        if tuple(prompt_encoder.image_embedding_size) != (h, w):
            raise ValueError(
                f"image embedding is {h}x{w} but the prompt encoder was built for "
                f"{prompt_encoder.image_embedding_size}; build the model for this input size"
            )
        dense_pe = prompt_encoder.get_dense_pe().to(image_embeddings.dtype)
        src = image_embeddings + self.no_mask_embed.reshape(1, channels, 1, 1).to(image_embeddings.dtype)
        tokens = torch.cat([mask_decoder.iou_token.weight, mask_decoder.mask_tokens.weight], dim=0)
        tokens = tokens.unsqueeze(0).expand(batch, -1, -1)
        # One image per token set: the batch dimension is the image batch (SAM's own decoder
        # repeat_interleaves one image over many prompts instead).
        hs, out = mask_decoder.transformer(src, dense_pe, tokens)
        out = out.transpose(1, 2).reshape(batch, channels, h, w)
        features = torch.cat([mask_decoder.output_upscaling(out), mask_decoder.output_upscaling(src)], dim=1)
        class_features = self.class_head(features)
        hyper = mask_decoder.output_hypernetworks_mlps[0](hs[:, 1, :])  # (B, 32): mask token 0
        fh, fw = class_features.shape[-2:]
        class_features = class_features.view(batch, self.num_classes, HYPER_DIM, fh, fw)
        logits = torch.einsum("bc,bkchw->bkhw", hyper.to(class_features.dtype), class_features)
        return F.interpolate(logits, size=output_size, mode="bilinear", align_corners=False)
