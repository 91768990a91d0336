"""Houlsby adapter size options: bottleneck width, blocks, placement."""

from __future__ import annotations

import pytest
import torch

from samsar.config import AdapterOptions, VariantOptions
from samsar.models.variants import build_segmenter


def per_adapter(dim: int, hidden: int) -> int:
    return dim * hidden + hidden + hidden * dim + dim


def vit_b_adapter_count(**options) -> int:
    seg = build_segmenter("adapter", backbone="vit_b", image_size=1024, num_classes=2,
                          options=VariantOptions(adapter=AdapterOptions(**options)), device="meta")
    return sum(p.numel() for p in seg.method.trainable_parameters(seg.sam).values())


def test_default_is_two_adapters_of_width_d_over_4_in_every_block():
    assert vit_b_adapter_count() == 12 * 2 * per_adapter(768, 192) == 7_100_928


def test_paper_sized_adapter_is_the_nearest_to_351_5_k():
    count = vit_b_adapter_count(hidden=19, placement="mlp")
    assert count == 12 * per_adapter(768, 19) == 359_652
    assert f"{count / 1024:.1f}" == "351.2"  # the paper's row: 351.5 K, which no width reaches exactly
    widths = [12 * k * per_adapter(768, h) for k in (1, 2) for h in range(1, 200)]
    assert min(widths, key=lambda n: abs(n - 351.5 * 1024)) == count


def test_blocks_and_placement_choose_where_adapters_go(tiny_segmenter):
    options = VariantOptions(adapter=AdapterOptions(hidden=8, blocks=[1], placement="attention"))
    seg = tiny_segmenter("adapter", options=options)
    names = list(seg.method.trainable_parameters(seg.sam))
    assert names and all(n.startswith("sam.image_encoder.blocks.1.adapters.attention.") for n in names)
    assert sum(seg.method.trainable_parameters(seg.sam)[n].numel() for n in names) == per_adapter(128, 8)
    assert not hasattr(seg.sam.image_encoder.blocks[0], "adapters")


def test_single_adapters_start_as_the_identity_and_train(tiny_segmenter, images):
    options = VariantOptions(adapter=AdapterOptions(hidden=8, placement="mlp"))
    seg, base = tiny_segmenter("adapter", options=options), tiny_segmenter("decoder_only", options=options)
    with torch.no_grad():
        assert torch.equal(seg(images), base(images))
    seg(images).sum().backward()
    ups = {n: p for n, p in seg.method.trainable_parameters(seg.sam).items() if ".mlp.up." in n}
    assert len(ups) == 2 * 2 and all(p.grad.abs().sum() > 0 for p in ups.values())  # zero-init up: down's grad is 0 at first


def test_out_of_range_blocks_and_bad_values_are_refused(tiny_segmenter):
    with pytest.raises(ValueError, match=r"blocks \[5\] are outside this encoder's blocks 0-1"):
        tiny_segmenter("adapter", options=VariantOptions(adapter=AdapterOptions(blocks=[0, 5])))
    for bad in ({"blocks": [1, 1]}, {"blocks": [-1]}, {"blocks": []}, {"hidden": 0}, {"placement": "neck"}):
        with pytest.raises(ValueError):
            AdapterOptions(**bad)
