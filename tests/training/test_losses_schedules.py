"""Losses, class weights, the learning-rate schedule and augmentation."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from samsar.training.augment import augment_batch
from samsar.training.losses import SegmentationLoss, class_weights_from_counts, soft_dice_loss
from samsar.training.schedules import WarmupCosine, warmup_cosine_factor


def test_inverse_sqrt_weights_are_normalised_and_favour_rare_classes():
    w = class_weights_from_counts([900, 100, 0], "inverse_sqrt")
    freq = np.array([0.9, 0.1, 0.0])
    assert float((w.numpy() * freq).sum()) == pytest.approx(1.0)
    assert w[1] / w[0] == pytest.approx(3.0)  # sqrt(0.9 / 0.1)
    assert w[2] == 0


def test_inverse_weights_and_explicit_list():
    w = class_weights_from_counts([300, 100], "inverse")
    assert w[1] / w[0] == pytest.approx(3.0)
    assert class_weights_from_counts([1, 1], [0.5, 2.0]).tolist() == [0.5, 2.0]
    assert class_weights_from_counts([1, 1], "none").tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match="2 classes"):
        class_weights_from_counts([1, 1], [1.0])


def test_dice_is_zero_for_perfect_prediction_and_ignores_unlabelled():
    target = torch.tensor([[[0, 1], [2, 255]]])
    logits = F.one_hot(target.clamp(max=2), 3).permute(0, 3, 1, 2).float() * 50
    logits[0, :, 1, 1] = torch.tensor([0.0, 0.0, 50.0])  # wrong only where unlabelled
    assert soft_dice_loss(logits, target, ignore_index=255).item() == pytest.approx(0.0, abs=1e-6)
    wrong = logits.roll(1, dims=1)
    assert soft_dice_loss(wrong, target, ignore_index=255).item() > 0.5


def test_segmentation_loss_equals_weighted_ce_plus_dice():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    target = torch.randint(0, 3, (2, 4, 4))
    target[0, 0, 0] = 255
    weights = torch.tensor([1.0, 2.0, 0.5])
    loss = SegmentationLoss(weights, ignore_index=255, dice_weight=0.5)(logits, target)
    expected = F.cross_entropy(logits, target, weight=weights, ignore_index=255) + 0.5 * soft_dice_loss(logits, target, 255)
    assert loss.item() == pytest.approx(expected.item())
    loss.backward()
    assert logits.grad.abs().sum() > 0
    all_ignored = torch.full_like(target, 255)
    assert SegmentationLoss(weights, 255)(logits, all_ignored).item() == 0


def test_warmup_then_cosine_to_floor():
    assert warmup_cosine_factor(0, 0.0, 10, 0.01) == pytest.approx(0.1)
    assert warmup_cosine_factor(9, 0.0, 10, 0.01) == pytest.approx(1.0)
    assert warmup_cosine_factor(10, 0.5, 10, 0.01) == pytest.approx(0.01 + 0.99 * 0.5)
    assert warmup_cosine_factor(50, 1.0, 10, 0.01) == pytest.approx(0.01)
    assert warmup_cosine_factor(50, 2.0, 10, 0.01) == pytest.approx(0.01)


def test_scheduler_keeps_group_ratios_and_decays_each_group_to_min_lr():
    p1, p2 = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([{"params": [p1], "lr": 1e-3}, {"params": [p2], "lr": 1e-1}])
    sched = WarmupCosine(opt, warmup_steps=2, min_lr=1e-6)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.5e-3, 0.5e-1])
    sched.step(0.0)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([1e-3, 1e-1])
    sched.step(0.5)
    assert opt.param_groups[1]["lr"] / opt.param_groups[0]["lr"] > 99
    sched.step(1.0)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([1e-6, 1e-6])
    restored = WarmupCosine(opt, 2, 1e-6)
    restored.load_state_dict(sched.state_dict())
    assert restored.step_count == 3


def test_augment_is_geometric_and_reproducible():
    images = torch.rand(4, 3, 8, 8)
    labels = (images[:, 0] * 5).long()  # label tied to pixel value: any geometric op keeps the pairing
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a_img, a_lab = augment_batch(images, labels, g1)
    b_img, b_lab = augment_batch(images, labels, g2)
    assert torch.equal(a_img, b_img) and torch.equal(a_lab, b_lab)
    assert torch.equal((a_img[:, 0] * 5).long(), a_lab)
    # radiometry untouched: each sample keeps its multiset of values
    for i in range(4):
        assert torch.equal(a_img[i].flatten().sort().values, images[i].flatten().sort().values)
    c_img, c_lab = augment_batch(images, labels, torch.Generator().manual_seed(3), crop=4)
    assert c_img.shape == images.shape and c_lab.shape == labels.shape
    assert set(c_lab.unique().tolist()) <= set(labels.unique().tolist())


def test_cosine_midpoint_value():
    assert warmup_cosine_factor(0, 0.25, 0, 0.0) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
