"""Building SAM models: backbone registry, official checkpoints, other input sizes.

``segment_anything/__init__.py`` imports its predictor, which needs torchvision. Only the
modelling code is used here, so without torchvision the package is registered without running
its ``__init__`` and ``segment_anything.modeling`` is imported directly.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import torch
import torch.nn.functional as F
from torch import nn

from samsar.io import file_sha256
from samsar.errors import SamsarError

PATCH_SIZE = 16
PROMPT_EMBED_DIM = 256
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


def import_sam_module(name: str = "modeling") -> ModuleType:
    """Return ``segment_anything.<name>`` (``modeling`` or ``build_sam``), with or without torchvision."""
    if "segment_anything" not in sys.modules and importlib.util.find_spec("torchvision") is None:
        spec = importlib.util.find_spec("segment_anything")
        if spec is None:
            raise ImportError("segment-anything is not installed: pip install segment-anything==1.0")
        # A package module whose __init__ (predictor -> torchvision) is never executed.
        sys.modules["segment_anything"] = importlib.util.module_from_spec(spec)
    return importlib.import_module(f"segment_anything.{name}")


def import_sam_modeling() -> ModuleType:
    """Return ``segment_anything.modeling``."""
    return import_sam_module("modeling")


@dataclass(frozen=True)
class BackboneSpec:
    """Shape of one SAM image encoder."""

    embed_dim: int
    depth: int
    num_heads: int
    global_attn_indexes: tuple[int, ...]
    window_size: int = 14
    default_image_size: int = 1024


BACKBONES: dict[str, BackboneSpec] = {
    "vit_b": BackboneSpec(768, 12, 12, (2, 5, 8, 11)),
    "vit_l": BackboneSpec(1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": BackboneSpec(1280, 32, 16, (7, 15, 23, 31)),
    # CPU stand-in (about 1.2 M encoder parameters): SAM's own neck, prompt encoder and
    # mask decoder, so every variant applies to it unchanged.
    "tiny": BackboneSpec(128, 2, 4, (1,), window_size=8, default_image_size=256),
}


class CheckpointError(SamsarError, ValueError):
    """A checkpoint file does not fit the requested backbone."""


def construct_sam(backbone: str, image_size: int) -> nn.Module:
    """Build a randomly initialised SAM in the official layout for ``image_size`` inputs."""
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone '{backbone}'; known: {', '.join(BACKBONES)}")
    if image_size % PATCH_SIZE:
        raise ValueError(f"image_size {image_size} must be a multiple of the patch size {PATCH_SIZE}")
    spec = BACKBONES[backbone]
    m = import_sam_modeling()
    grid = image_size // PATCH_SIZE
    return m.Sam(
        image_encoder=m.ImageEncoderViT(
            depth=spec.depth,
            embed_dim=spec.embed_dim,
            img_size=image_size,
            mlp_ratio=4,
            norm_layer=functools.partial(nn.LayerNorm, eps=1e-6),
            num_heads=spec.num_heads,
            patch_size=PATCH_SIZE,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=spec.global_attn_indexes,
            window_size=spec.window_size,
            out_chans=PROMPT_EMBED_DIM,
        ),
        prompt_encoder=m.PromptEncoder(
            embed_dim=PROMPT_EMBED_DIM,
            image_embedding_size=(grid, grid),
            input_image_size=(image_size, image_size),
            mask_in_chans=16,
        ),
        mask_decoder=m.MaskDecoder(
            num_multimask_outputs=3,
            transformer=m.TwoWayTransformer(depth=2, embedding_dim=PROMPT_EMBED_DIM, mlp_dim=2048, num_heads=8),
            transformer_dim=PROMPT_EMBED_DIM,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
        ),
        pixel_mean=list(PIXEL_MEAN),
        pixel_std=list(PIXEL_STD),
    )


def build_sam(
    backbone: str,
    image_size: int,
    checkpoint: Path | str | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> tuple[nn.Module, str]:
    """Build SAM and return ``(sam, base_id)``.

    ``base_id`` is the checkpoint's sha256, or ``"random-init:<seed>"`` without a checkpoint
    (the initialisation is then a pure function of ``seed``). ``device="meta"`` builds shapes
    only (for counting parameters and FLOPs).
    """
    with torch.random.fork_rng(devices=[]), torch.device(device or "cpu"):
        torch.manual_seed(seed)
        # .to(): Sam builds pixel_mean/std with the legacy torch.Tensor(), which ignores the device context.
        sam = construct_sam(backbone, image_size).to(device or "cpu")
    if checkpoint is None:
        return sam, f"random-init:{seed}"
    checkpoint = Path(checkpoint)
    state = load_checkpoint_state(checkpoint)
    _check_backbone(state, backbone, checkpoint)
    state = resize_state_dict(state, sam.state_dict())
    try:
        sam.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{checkpoint}: does not fit a SAM {backbone}: {exc}") from exc
    return sam, file_sha256(checkpoint)


def load_checkpoint_state(path: Path) -> dict[str, torch.Tensor]:
    """Read a SAM state dict safely (``weights_only=True``)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: SAM checkpoint not found (set model.checkpoint or run `samsar pretrain`)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"{path}: not a readable tensor-only checkpoint (truncated, corrupt, or pickling objects other than "
            f"tensors, which are never loaded); replace it with the original file or fix model.checkpoint"
        ) from exc
    if not isinstance(state, dict) or "image_encoder.patch_embed.proj.weight" not in state:
        raise CheckpointError(f"{path}: not a SAM state dict in the official key format (image_encoder.*, mask_decoder.*)")
    return state


def _check_backbone(state: dict[str, torch.Tensor], backbone: str, path: Path) -> None:
    spec = BACKBONES[backbone]
    width = state["image_encoder.patch_embed.proj.weight"].shape[0]
    depth = len({k.split(".")[2] for k in state if k.startswith("image_encoder.blocks.")})
    if (width, depth) != (spec.embed_dim, spec.depth):
        found = next((n for n, s in BACKBONES.items() if (s.embed_dim, s.depth) == (width, depth)), "unknown")
        raise CheckpointError(
            f"{path}: holds a {found} encoder (width {width}, depth {depth}), not {backbone}; "
            f"set model.backbone to match the checkpoint"
        )


def resize_state_dict(state: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Interpolate position tables of a checkpoint to the target model's input size.

    The absolute position embedding ``(1, g, g, C)`` is resized bicubically; relative-position
    tables ``(2g - 1, head_dim)`` of global-attention blocks linearly (as SAM's ``get_rel_pos``
    does at run time). Every other tensor is passed through unchanged.
    """
    out = dict(state)
    for key, value in state.items():
        want = target.get(key)
        if want is None or want.shape == value.shape:
            continue
        if key.endswith("pos_embed"):
            grid = value.permute(0, 3, 1, 2).float()
            grid = F.interpolate(grid, size=want.shape[1:3], mode="bicubic", align_corners=False)
            out[key] = grid.permute(0, 2, 3, 1).to(value.dtype).contiguous()
        elif key.endswith(("rel_pos_h", "rel_pos_w")):
            table = value.float().T.unsqueeze(0)
            table = F.interpolate(table, size=want.shape[0], mode="linear", align_corners=False)
            out[key] = table[0].T.to(value.dtype).contiguous()
    return out
