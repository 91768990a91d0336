"""LoRA on the q/k/v slices of the fused qkv (SAMed): counts, numerics, merging, validation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from samsar.config import LoraOptions, ParamsError, VariantOptions, load_params
from samsar.models.artifacts import load_adapter, save_adapter
from samsar.models.peft.lora import LoraQkv, inject_lora
from samsar.models.sam import construct_sam
from samsar.models.variants import build_segmenter

QV = VariantOptions(lora=LoraOptions(rank=4, alpha=4.0, targets=["q", "v"]))


def test_rank_4_on_q_and_v_is_the_papers_147456_on_vit_b():
    seg = build_segmenter("lora", backbone="vit_b", image_size=1024, num_classes=2, options=QV, device="meta")
    trained = seg.method.trainable_parameters(seg.sam)
    assert sum(p.numel() for p in trained.values()) == 147_456 == 12 * 2 * 4 * (768 + 768)
    assert {n.rpartition(".")[2] for n in trained} == {"lora_a_q", "lora_b_q", "lora_a_v", "lora_b_v"}
    assert all(".attn.qkv." in n for n in trained)


def fixture_qkv(slices, scale_alpha=8.0):
    torch.manual_seed(0)
    base = nn.Linear(6, 3 * 5)
    return base, LoraQkv(base, slices, rank=2, alpha=scale_alpha)


def test_zero_b_leaves_the_output_unchanged():
    base, lora = fixture_qkv(["q", "v"])
    x = torch.randn(3, 4, 6)
    with torch.no_grad():
        assert torch.equal(lora(x), base(x))


def test_update_lands_on_the_q_and_v_slices_only():
    base, lora = fixture_qkv(["q", "v"], scale_alpha=8.0)  # scaling 8 / 2 = 4
    with torch.no_grad():
        for name in ("lora_a_q", "lora_b_q", "lora_a_v", "lora_b_v"):
            getattr(lora, name).normal_()
        x = torch.randn(3, 4, 6)
        dq = 4.0 * x @ lora.lora_a_q.T @ lora.lora_b_q.T
        dv = 4.0 * x @ lora.lora_a_v.T @ lora.lora_b_v.T
        expected = base(x) + torch.cat([dq, torch.zeros_like(dq), dv], dim=-1)
        assert torch.allclose(lora(x), expected, atol=1e-5)
        assert torch.allclose(lora.merged()(x), expected, atol=1e-5)
    assert lora.weight is base.weight and not hasattr(lora, "lora_a_k")


def test_each_slice_gets_its_own_factors():
    _, lora = fixture_qkv(["k"])
    assert [n for n, _ in lora.named_parameters() if n.startswith("lora_")] == ["lora_a_k", "lora_b_k"]


def perturb(seg):
    with torch.no_grad():
        for p in seg.method.trainable_parameters(seg.sam).values():
            p.add_(0.05 * torch.randn_like(p))


def test_artifact_round_trip_is_exact(tiny_segmenter, tmp_path, images):
    seg = tiny_segmenter("parser_lora", options=QV)
    perturb(seg)
    meta = {"class_names": ["a", "b", "c"], "colors": [[0, 0, 0], [255, 0, 0], [0, 255, 0]], "scaling": {}}
    loaded, _ = load_adapter(save_adapter(seg, tmp_path / "adapter", meta))
    with torch.no_grad():
        assert torch.equal(loaded(images), seg(images))


def test_whole_layers_and_slices_mix():
    sam = construct_sam("tiny", 256)
    inject_lora(sam.image_encoder, ["v", "proj"], rank=2, alpha=2.0)
    names = [n for n, _ in sam.image_encoder.named_parameters() if "lora_" in n]
    assert {n.split(".", 2)[2] for n in names} == {"attn.qkv.lora_a_v", "attn.qkv.lora_b_v",
                                                   "attn.proj.lora_a", "attn.proj.lora_b"}


@pytest.mark.parametrize("targets, message", [
    (["q", "w"], "unknown LoRA target"),
    (["qkv", "q"], "either qkv or q/k/v"),
    (["v", "v"], "listed twice"),
])
def test_bad_targets_are_refused_at_load_in_one_line(tmp_path, targets, message):
    path = tmp_path / "params.yaml"
    path.write_text("data: {classes: [{name: a, color: [0, 0, 0]}, {name: b, color: [1, 1, 1]}], background: a}\n"
                    f"variant_options: {{lora: {{targets: {targets}}}}}\n".replace("'", ""))
    with pytest.raises(ParamsError, match=message) as info:
        load_params(path, check_inputs=False)
    assert "variant_options.lora.targets" in str(info.value) and "\n" not in str(info.value)
