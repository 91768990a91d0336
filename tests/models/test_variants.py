"""Every fine-tuning method: counts, training behaviour, identity at init, merging, caching."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from samsar.config import CwsamOptions, LoraOptions, VariantOptions
from samsar.models.peft.base import MergeNotSupportedError
from samsar.models.peft.cwsam import LowFrequencyPrompts, low_pass
from samsar.models.sam import construct_sam, import_sam_module
from samsar.models.variants import VARIANTS, build_segmenter

ALL = sorted(VARIANTS)
MERGEABLE = ["parser", "lora", "parser_lora"]


# ---------------------------------------------------------------- analytic counts (ViT-B, K=5)
def linear(i: int, o: int) -> int:
    return i * o + o


def mlp3(i: int, h: int, o: int) -> int:
    return linear(i, h) + linear(h, h) + linear(h, o)


D, DEPTH, K, R = 768, 12, 5, 4
SAM_DECODER = 4_058_340
UNUSED_DECODER = mlp3(256, 256, 4) + 3 * mlp3(256, 256, 32)  # IoU head + hypernetworks of tokens 1-3
CLASS_HEAD = (64 * 64 * 4 + 64) + 2 * 64 + (64 * 32 * K * 49 + 32 * K)
NO_MASK = 256
ADAPTERS = DEPTH * 2 * (linear(D, D // 4) + linear(D // 4, D))
C = D // 32
LOW_FREQ = (3 * C * 16 * 16 + C) + linear(D, C) + DEPTH * linear(C, C) + linear(C, D)
LORA = DEPTH * R * ((D + 3 * D) + (D + D))
DECODER_SIDE = SAM_DECODER - UNUSED_DECODER + CLASS_HEAD + NO_MASK


def test_analytic_figures_match_the_design_notes():
    assert (ADAPTERS, LOW_FREQ, CLASS_HEAD) == (7_100_928, 63_312, 518_496)
    assert ADAPTERS + LOW_FREQ + SAM_DECODER + CLASS_HEAD + NO_MASK == 11_741_332
    assert UNUSED_DECODER == 552_036


@pytest.fixture(scope="module")
def vit_b_encoder_size() -> int:
    with torch.device("meta"):
        official = import_sam_module("build_sam").build_sam_vit_b()
    return sum(p.numel() for p in official.image_encoder.parameters())


@pytest.mark.parametrize("variant", ALL)
def test_vit_b_trainable_counts_are_analytic(variant, vit_b_encoder_size):
    seg = build_segmenter(variant, backbone="vit_b", image_size=1024, num_classes=K, device="meta")
    encoder_part = {
        "decoder_only": 0, "full": vit_b_encoder_size, "lora": LORA, "adapter": ADAPTERS,
        "parser": 512, "cwsam": ADAPTERS + LOW_FREQ, "parser_lora": 512 + LORA,
    }[variant]
    assert sum(p.numel() for p in seg.method.trainable_parameters(seg.sam).values()) == encoder_part
    total = sum(p.numel() for p in seg.named_trainable_parameters().values())
    # The SAM decoder's IoU head and unused hypernetworks can never get a gradient: excluded.
    assert total == encoder_part + DECODER_SIDE
    if variant == "cwsam":
        assert total == 11_741_332 - UNUSED_DECODER


# ---------------------------------------------------------------- training behaviour
def train_steps(seg, images, steps=2):
    """``steps`` AdamW steps; returns the gradients of the last one."""
    opt = torch.optim.AdamW(seg.param_groups(1e-2), weight_decay=0.01)
    target = torch.randint(0, 3, (images.shape[0], 256, 256), generator=torch.Generator().manual_seed(1))
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(seg(images), target).backward()
        opt.step()
    return {n: p.grad for n, p in seg.named_trainable_parameters().items()}


@pytest.mark.parametrize("variant", ALL)
def test_training_moves_only_trainable_tensors_and_all_get_gradients(variant, tiny_segmenter, images):
    seg = tiny_segmenter(variant)
    before = {n: t.clone() for n, t in seg.state_dict().items()}
    trainable = set(seg.named_trainable_parameters())
    assert trainable
    grads = train_steps(seg, images)  # two steps: zero-initialised LoRA B / adapter up unblock A / down
    no_grad = [n for n, g in grads.items() if g is None or not g.abs().sum() > 0]
    assert no_grad == []
    after = seg.state_dict()
    frozen_changed = [n for n in before if n not in trainable and not torch.equal(before[n], after[n])]
    assert frozen_changed == []
    assert all(not torch.equal(before[n], after[n]) for n in trainable)


@pytest.mark.parametrize("variant", ["cwsam", "lora"])
def test_gradient_checkpointing_gives_the_same_gradients(variant, tiny_segmenter, images):
    plain, checkpointed = tiny_segmenter(variant), tiny_segmenter(variant, gradient_checkpointing=True)
    for seg in (plain, checkpointed):
        seg(images).square().mean().backward()
    g1, g2 = plain.named_trainable_parameters(), checkpointed.named_trainable_parameters()
    assert g1.keys() == g2.keys()
    assert all(torch.allclose(g1[n].grad, g2[n].grad, rtol=1e-4, atol=1e-7) for n in g1)


@pytest.mark.parametrize("variant", ALL)
def test_forward_splits_at_the_trunk(variant, tiny_segmenter, images):
    seg = tiny_segmenter(variant)
    with torch.no_grad():
        features = seg.trunk_features(images)
        assert features.shape == (2, 16, 16, 128)
        assert torch.equal(seg(images), seg.forward_from_trunk(features))
        # fp16 features (the cache's storage type) are accepted
        assert seg.forward_from_trunk(features.half()).dtype == torch.float32
    assert seg.supports_feature_cache == (variant in ("decoder_only", "parser"))


def test_parser_on_blocks_cannot_use_the_feature_cache(tiny_segmenter, parser_on_blocks):
    assert not tiny_segmenter("parser", options=parser_on_blocks).supports_feature_cache


def test_wrong_input_size_is_refused(tiny_segmenter):
    with pytest.raises(ValueError, match=r"\(B, 3, 256, 256\)"):
        tiny_segmenter("decoder_only")(torch.rand(1, 3, 128, 128))


# ---------------------------------------------------------------- identity at init, merging
@pytest.mark.parametrize("variant", ["parser", "parser_blocks", "lora", "adapter", "parser_lora"])
def test_methods_start_identical_to_the_base(variant, tiny_segmenter, parser_on_blocks, images, tiny_checkpoint):
    options = parser_on_blocks if variant == "parser_blocks" else None
    method = "parser" if variant == "parser_blocks" else variant
    seg = tiny_segmenter(method, options=options, checkpoint=tiny_checkpoint)
    base = tiny_segmenter("decoder_only", checkpoint=tiny_checkpoint)
    with torch.no_grad():
        assert torch.allclose(seg(images), base(images), rtol=1e-4, atol=1e-5)


def perturb_trainable_encoder(seg):
    with torch.no_grad():
        for p in seg.method.trainable_parameters(seg.sam).values():
            p.add_(0.05 * torch.randn_like(p))


QKV_SLICES = VariantOptions(lora=LoraOptions(targets=["q", "v"]))


@pytest.mark.parametrize("variant, options", [(v, None) for v in MERGEABLE] + [("lora", QKV_SLICES)],
                         ids=[*MERGEABLE, "lora-q-v"])
def test_merge_keeps_outputs_and_loads_into_stock_sam(variant, options, tiny_segmenter, images):
    seg = tiny_segmenter(variant, options=options) if options else tiny_segmenter(variant)
    perturb_trainable_encoder(seg)
    with torch.no_grad():
        factorised = seg(images)
        seg.merge()
        merged = seg(images)
    assert torch.allclose(factorised, merged, rtol=1e-4, atol=1e-5)
    stock = construct_sam("tiny", 256)
    stock.load_state_dict(seg.sam.state_dict(), strict=True)
    x = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        assert torch.allclose(stock.image_encoder(x), seg.sam.image_encoder(x), atol=1e-5)


def test_merge_of_parser_on_blocks_restores_plain_linears(tiny_segmenter, parser_on_blocks):
    seg = tiny_segmenter("parser", options=parser_on_blocks)
    seg.merge()
    construct_sam("tiny", 256).load_state_dict(seg.sam.state_dict(), strict=True)


@pytest.mark.parametrize("variant", ["adapter", "cwsam"])
def test_adapter_methods_refuse_to_merge(variant, tiny_segmenter):
    with pytest.raises(MergeNotSupportedError, match=variant):
        tiny_segmenter(variant).merge()


def test_parser_coefficients_have_their_own_group(tiny_segmenter):
    options = VariantOptions(parser={"lr": 0.3})
    seg = tiny_segmenter("parser", options=options)
    groups = {g["name"]: g for g in seg.param_groups(1e-4)}
    coefficients = groups["parser_coefficients"]
    assert coefficients["lr"] == 0.3 and coefficients["weight_decay"] == 0.0
    assert sum(p.numel() for p in coefficients["params"]) == 128 + 256  # tiny neck: min(256, 128) + 256
    assert groups["default"]["lr"] == 1e-4
    grouped = [id(p) for g in groups.values() for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in seg.named_trainable_parameters().values())


def test_lora_targets_are_configurable(tiny_segmenter):
    seg = tiny_segmenter("lora", options=VariantOptions(lora=LoraOptions(rank=2, targets=["lin1"])))
    names = list(seg.method.trainable_parameters(seg.sam))
    assert names and all(".mlp.lin1.lora_" in n for n in names)
    with pytest.raises(ValueError, match="qkvv"):
        tiny_segmenter("lora", options=VariantOptions(lora=LoraOptions(targets=["qkvv"])))


# ---------------------------------------------------------------- CWSAM specifics
def test_low_pass_keeps_smooth_images_and_removes_fine_texture():
    flat = torch.full((1, 3, 32, 32), 0.7)
    assert torch.allclose(low_pass(flat, 0.25), flat, atol=1e-6)
    checker = (torch.arange(32)[:, None] + torch.arange(32)[None, :]) % 2 * 2.0 - 1.0
    assert low_pass(checker.expand(1, 3, 32, 32), 0.25).abs().max() < 1e-5


def test_faithful_mode_reproduces_the_reference_token_scramble():
    torch.manual_seed(0)
    module = LowFrequencyPrompts(dim=64, depth=2, patch_size=16, ratio=0.25, faithful=True)
    images, tokens = torch.randn(2, 3, 64, 64), torch.randn(2, 4, 4, 64)
    with torch.no_grad():
        prompts = module(images, tokens)
        # the reference: x (N, H, W, C) -> x.reshape(N, C, H * W).permute(0, 2, 1) -> Linear
        scrambled = module.token_embed(tokens.reshape(2, 64, 16).permute(0, 2, 1)).reshape(2, 4, 4, -1)
        handcrafted = module.image_embed(low_pass(images, 0.25)).permute(0, 2, 3, 1)
        expected = module.shared_up(F.gelu(module.block_mlps[1](handcrafted + scrambled)))
        assert torch.allclose(prompts[1], expected, atol=1e-6)
        module.faithful = False
        assert not torch.allclose(module(images, tokens)[1], expected, atol=1e-3)


def test_cwsam_modes_differ_and_prompts_reach_every_block(tiny_segmenter, images):
    fixed = tiny_segmenter("cwsam")
    faithful = tiny_segmenter("cwsam", options=VariantOptions(cwsam=CwsamOptions(mode="faithful")))
    with torch.no_grad():
        assert not torch.allclose(fixed(images), faithful(images))
        prompts = fixed.method.block_prompts(images, fixed.sam.image_encoder.patch_embed(images))
    assert len(prompts) == len(fixed.sam.image_encoder.blocks)
    assert prompts[0].shape == (2, 16, 16, 128)


def test_cwsam_adapters_keep_pytorch_linear_defaults(tiny_segmenter):
    from samsar.models.peft.adapter import inject_adapters
    from samsar.models.peft.cwsam import Cwsam

    sam, reference = construct_sam("tiny", 256), construct_sam("tiny", 256)
    torch.manual_seed(7)
    Cwsam(VariantOptions()).apply(sam)
    torch.manual_seed(7)  # the same draws as plain nn.Linear layers created in the same order
    inject_adapters(reference.image_encoder, 4, mlp_mode="parallel", zero_init_up=False)
    ours = {n: p for n, p in sam.image_encoder.named_parameters() if ".adapters." in n}
    expected = dict(reference.image_encoder.named_parameters())
    assert ours and all(torch.equal(p, expected[n]) for n, p in ours.items())
    # and their spread is kaiming-uniform's (bound 1/sqrt(fan_in)), not trunc-normal 0.02, biases non-zero
    seg = tiny_segmenter("cwsam")
    for block in seg.sam.image_encoder.blocks:
        for linear_layer in (block.adapters.attention.down, block.adapters.mlp.up):
            bound = linear_layer.in_features ** -0.5
            assert linear_layer.weight.abs().max() <= bound
            assert abs(linear_layer.weight.std().item() / (bound / 3 ** 0.5) - 1) < 0.1
            assert torch.count_nonzero(linear_layer.bias) == linear_layer.bias.numel()


def test_cwsam_prompt_generator_has_the_reference_init(tiny_segmenter):
    module = tiny_segmenter("cwsam").method.low_frequency
    linears = [module.token_embed, module.shared_up, *module.block_mlps]
    weights = torch.cat([m.weight.flatten() for m in linears])
    # trunc_normal_(std=0.02) as timm/the reference call it: cut at +-2 absolute, so std stays 0.02
    assert abs(weights.std().item() / 0.02 - 1) < 0.15  # ~1,000 weights in the tiny model; defaults give >= 0.05
    conv = module.image_embed
    fan_out = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]
    assert abs(conv.weight.std().item() / (2.0 / fan_out) ** 0.5 - 1) < 0.1
    assert all(torch.count_nonzero(m.bias) == 0 for m in [*linears, conv])


def test_cwsam_reduction_is_its_own_option(tiny_segmenter):
    def count(options):
        seg = tiny_segmenter("cwsam", options=options)
        return sum(p.numel() for p in seg.method.trainable_parameters(seg.sam).values())

    default = count(VariantOptions())
    assert count(VariantOptions(adapter={"reduction": 8})) == default  # the Houlsby baseline's size
    assert count(VariantOptions(cwsam=CwsamOptions(reduction=8))) < default
    with pytest.raises(ValueError):
        CwsamOptions(reduction=0)
