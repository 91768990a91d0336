"""``samsar models describe``: size and cost of every variant, without real weights.

Models are built on the ``meta`` device (shapes only), so even ViT-H at 1024 px is described
in seconds: parameter counts, the exact size of the adapter.safetensors each variant would
write, and forward FLOPs per image (``torch.utils.flop_counter``; matmuls and convolutions).
Parameters print in K = 1024 with one decimal, as the SAM-PARSER paper's table, beside its
ViT-B figures (:data:`PARSER_PAPER_K`).
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


#: The SAM-PARSER paper's parameter columns (ViT-B, K = 1024): decoder-only trains SAM's whole
#: mask decoder; the other rows add their encoder-side parameters to it.
PARSER_PAPER_K = {"decoder_only": 3963.2, "parser": 0.5, "lora": 144.0, "adapter": 351.5}


def describe_variant(variant: str, backbone: str, num_classes: int, image_size: int,
                     options: VariantOptions | None = None) -> dict:
    """Parameter counts, artifact size and forward GFLOPs (one image) of one variant.

    ``base_params``: the decoder side as the papers count it: SAM's whole mask decoder plus the
    head's own parameters (class head, no-mask embedding). ``method_params``: what the method adds
    or unfreezes in the encoder. ``trainable_params``: what samsar actually optimises (the base
    minus the decoder parts that never get a gradient, plus the method's).
    """
    segmenter = build_segmenter(variant, backbone=backbone, image_size=image_size, num_classes=num_classes,
                                options=options, device="meta")
    trainable = segmenter.named_trainable_parameters()
    images = torch.empty(1, 3, image_size, image_size, device="meta")
    # The box head: one box prompt (the whole image) per image.
    boxes = [torch.tensor([[0.0, 0.0, image_size - 1.0, image_size - 1.0]])] if segmenter.takes_boxes else None
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        segmenter(images, boxes) if boxes is not None else segmenter(images)
    base = sum(p.numel() for p in segmenter.sam.mask_decoder.parameters())
    base += sum(p.numel() for p in segmenter.head.parameters())
    method = sum(p.numel() for p in segmenter.method.trainable_parameters(segmenter.sam).values())
    return {
        "variant": variant,
        "total_params": sum(p.numel() for p in segmenter.parameters()),
        "trainable_params": sum(p.numel() for p in trainable.values()),
        "base_params": base,
        "method_params": method,
        "base_plus_method_params": base + method,
        "artifact_bytes": safetensors_nbytes(dict(trainable)),
        "gflops": counter.get_total_flops() / 1e9,
    }


def kilo(n: int) -> str:
    """A parameter count in K = 1024, one decimal (``4,058,340`` -> ``3,963.2``)."""
    return f"{n / 1024:,.1f}"


def describe(backbone: str, num_classes: int, image_size: int, options: VariantOptions | None = None,
             console: Console | None = None) -> list[dict]:
    """Print a table of every registered variant and return its rows."""
    options = options or VariantOptions()
    rows = [describe_variant(v, backbone, num_classes, image_size, options) for v in VARIANTS]
    paper = backbone == "vit_b"
    table = Table(title=f"SAM {backbone}, {options.head} head, {num_classes} classes, {image_size} px "
                        f"(forward FLOPs per image)")
    columns = ["variant", "base: decoder side", "added by method", "base + method"]
    columns += ["SAM-PARSER paper"] if paper else []
    columns += ["trained (exact)", "total params", "artifact", "GFLOPs"]
    for column in columns:
        table.add_column(column, justify="left" if column == "variant" else "right", no_wrap=column == "variant")
    for r in rows:
        cells = [r["variant"], kilo(r["base_params"]), f"+{kilo(r['method_params'])}", kilo(r["base_plus_method_params"])]
        if paper:
            figure = PARSER_PAPER_K.get(r["variant"])
            cells.append("" if figure is None else f"{figure:,.1f}" if r["variant"] == "decoder_only" else f"+{figure:,.1f}")
        cells += [f"{r['trainable_params']:,}", f"{r['total_params']:,}", _human_bytes(r["artifact_bytes"]),
                  f"{r['gflops']:.1f}"]
        table.add_row(*cells)
    # Wide enough for every column whole; a narrower terminal wraps lines instead of truncating numbers.
    console = console or Console(width=max(Console().width, 150))
    console.print("Parameters in K = 1024 parameters, one decimal (the SAM-PARSER paper's unit); "
                  "'trained (exact)' and 'total params' are plain counts.")
    console.print(table)
    console.print(
        f"Options: lora {options.lora.targets} rank {options.lora.rank}; adapter "
        f"{'hidden ' + str(options.adapter.hidden) if options.adapter.hidden else 'reduction ' + str(options.adapter.reduction)}, "
        f"placement {options.adapter.placement}, blocks {'all' if options.adapter.blocks is None else options.adapter.blocks}; "
        f"parser on {options.parser.targets}.")
    console.print("base: SAM's whole mask decoder, as the papers count decoder-only fine-tuning, plus the head's "
                  "own parameters. 'trained (exact)' leaves out the decoder parts that never get a gradient "
                  "(IoU head, hypernetwork MLPs of mask tokens 1-3) and the prompt encoder. PARSER's frozen U, V are "
                  "buffers, not parameters, so its total is below the base's.")
    if paper:
        console.print("SAM-PARSER paper: its table's ViT-B figures (decoder-only, then what each method adds). With "
                      "the paper's options (examples/params-parser-paper.yaml) decoder-only, PARSER and LoRA match "
                      "them; no Houlsby adapter size gives the adapter row's 351.5 K exactly (the nearest: hidden 19, "
                      "placement mlp, 351.2 K).")
    return rows


def _human_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")
