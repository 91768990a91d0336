"""The classwise mask decoder: shapes, batching, which SAM parts it uses, class channels."""

from __future__ import annotations

import torch


def test_logits_have_one_map_per_class_at_input_size(tiny_segmenter, images):
    seg = tiny_segmenter("decoder_only")
    captured = {}

    def record(module, args, out):
        captured["shape"] = out.shape

    seg.head.class_head.register_forward_hook(record)
    with torch.no_grad():
        logits = seg(images)
    k = 3
    assert logits.shape == (2, k, 256, 256)
    assert captured["shape"] == (2, 32 * k, 64, 64)  # class features at input / 4


def test_batch_items_are_independent(tiny_segmenter, images):
    seg = tiny_segmenter("decoder_only")
    with torch.no_grad():
        together = seg(images)
        apart = torch.cat([seg(images[:1]), seg(images[1:])])
    assert torch.allclose(together, apart, atol=1e-5)
    assert not torch.allclose(together[0], together[1])


def test_no_mask_embedding_starts_from_sam_and_is_trained(tiny_segmenter):
    seg = tiny_segmenter("decoder_only")
    assert torch.equal(seg.head.no_mask_embed.detach(), seg.sam.prompt_encoder.no_mask_embed.weight)
    assert seg.head.no_mask_embed.requires_grad
    assert not seg.sam.prompt_encoder.no_mask_embed.weight.requires_grad


def test_only_mask_token_zero_hypernetwork_is_used(tiny_segmenter, images):
    seg = tiny_segmenter("decoder_only")
    decoder = seg.sam.mask_decoder
    with torch.no_grad():
        before = seg(images)
        for unused in [decoder.iou_prediction_head, *decoder.output_hypernetworks_mlps[1:]]:
            for p in unused.parameters():
                p.add_(1.0)
        assert torch.equal(seg(images), before)
        decoder.output_hypernetworks_mlps[0].layers[-1].bias.add_(1.0)
        assert not torch.allclose(seg(images), before)
    trainable = seg.named_trainable_parameters()
    assert not any("iou_prediction_head" in n or "output_hypernetworks_mlps.1" in n for n in trainable)
    assert any("output_hypernetworks_mlps.0" in n for n in trainable)


def test_each_class_reads_its_own_32_channels(tiny_segmenter, images):
    seg = tiny_segmenter("decoder_only")
    with torch.no_grad():
        before = seg(images)
        conv = seg.head.class_head[3]
        conv.weight[32:64].zero_()  # class 1's channels
        conv.bias[32:64].zero_()
        after = seg(images)
    assert torch.equal(after[:, 1], torch.zeros_like(after[:, 1]))  # GELU(0) = 0 -> zero logits
    assert torch.equal(after[:, [0, 2]], before[:, [0, 2]])


def test_light_head_gives_the_same_output_shapes_for_a_fraction_of_the_parameters(tiny_segmenter, images):
    from samsar.models.classwise_decoder import ClasswiseMaskDecoder

    seg = tiny_segmenter("full")
    full_head_params = sum(p.numel() for p in seg.head.class_head.parameters())
    seg.head = ClasswiseMaskDecoder(3, seg.sam.prompt_encoder.no_mask_embed.weight, light=True)
    captured = {}
    seg.head.class_head.register_forward_hook(lambda m, a, out: captured.update(shape=out.shape))
    logits = seg(images)
    assert logits.shape == (2, 3, 256, 256)
    assert captured["shape"] == (2, 32 * 3, 64, 64)  # same class features at input / 4
    assert sum(p.numel() for p in seg.head.class_head.parameters()) * 20 < full_head_params
    logits.sum().backward()
    assert seg.sam.image_encoder.patch_embed.proj.weight.grad is not None  # the trunk still learns


def test_class_head_conv_has_the_reference_init(tiny_segmenter):
    conv = tiny_segmenter("decoder_only").head.class_head[3]
    assert conv.kernel_size == (7, 7)
    fan_out = conv.out_channels * 7 * 7
    # normal(0, sqrt(2 / fan_out)); PyTorch's default would give about half this std
    assert abs(conv.weight.std().item() / (2.0 / fan_out) ** 0.5 - 1) < 0.03
    assert abs(conv.weight.mean().item()) < 1e-3
    assert torch.count_nonzero(conv.bias) == 0
