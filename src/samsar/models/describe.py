"""``samsar models describe``: size and cost of every variant, without real weights.

Models are built on the ``meta`` device (shapes only), so even ViT-H at 1024 px is described
in seconds: parameter counts, the exact size of the adapter.safetensors each variant would
write, and forward FLOPs per image (``torch.utils.flop_counter``; matmuls and convolutions).
"""

from __future__ import annotations

import json
import math

import torch
from rich.console import Console
from rich.table import Table
from torch.utils.flop_counter import FlopCounterMode

from samsar.config import VariantOptions
from samsar.models.variants import VARIANTS, build_segmenter

_SAFETENSORS_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64"}


def safetensors_nbytes(tensors: dict[str, torch.Tensor]) -> int:
    """Size of the file ``safetensors.torch.save_file(tensors)`` writes (works on meta tensors).

    Layout: 8-byte header length, JSON header padded with spaces to a multiple of 8, data;
    entries ordered by decreasing dtype size, then name.
    """
    order = sorted(tensors, key=lambda n: (-tensors[n].element_size(), n))
    header, offset = {}, 0
    for name in order:
        t = tensors[name]
        end = offset + t.numel() * t.element_size()
        header[name] = {"dtype": _SAFETENSORS_DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, end]}
        offset = end
    header_len = len(json.dumps(header, separators=(",", ":")).encode())
    return 8 + math.ceil(header_len / 8) * 8 + offset


def describe_variant(variant: str, backbone: str, num_classes: int, image_size: int,
                     options: VariantOptions | None = None) -> dict:
    """Parameter counts, artifact size and forward GFLOPs (one image) of one variant."""
    segmenter = build_segmenter(variant, backbone=backbone, image_size=image_size, num_classes=num_classes,
                                options=options, device="meta")
    trainable = segmenter.named_trainable_parameters()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        segmenter(torch.empty(1, 3, image_size, image_size, device="meta"))
    return {
        "variant": variant,
        "total_params": sum(p.numel() for p in segmenter.parameters()),
        "trainable_params": sum(p.numel() for p in trainable.values()),
        "encoder_trainable_params": sum(p.numel() for p in segmenter.method.trainable_parameters(segmenter.sam).values()),
        "artifact_bytes": safetensors_nbytes(dict(trainable)),
        "gflops": counter.get_total_flops() / 1e9,
    }


def describe(backbone: str, num_classes: int, image_size: int, options: VariantOptions | None = None) -> list[dict]:
    """Print a table of every registered variant and return its rows."""
    rows = [describe_variant(v, backbone, num_classes, image_size, options) for v in VARIANTS]
    table = Table(title=f"SAM {backbone}, {num_classes} classes, {image_size} px (forward FLOPs per image)")
    for column in ("variant", "total params", "trainable", "of which encoder", "artifact", "GFLOPs"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for r in rows:
        table.add_row(r["variant"], f"{r['total_params']:,}", f"{r['trainable_params']:,}",
                      f"{r['encoder_trainable_params']:,}", _human_bytes(r["artifact_bytes"]), f"{r['gflops']:.1f}")
    console = Console()
    console.print(table)
    console.print("Trainable counts exclude SAM decoder parts the heads never use (IoU head, hypernetwork "
                  "MLPs of mask tokens 1-3) and the prompt encoder. PARSER's frozen U, V are buffers, "
                  "not parameters, so its total is below the base's.")
    return rows


def _human_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")
