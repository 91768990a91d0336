"""The box-prompt binary head and training boxes from label masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from samsar.config import VariantOptions
from samsar.models.box_prompt import boxes_from_labels

BOX_HEAD = VariantOptions(head="box_prompt")


def two_ships() -> torch.Tensor:
    labels = torch.zeros(1, 64, 64, dtype=torch.long)
    labels[0, 10:20, 5:15] = 1
    labels[0, 40:60, 30:34] = 1
    return labels


def test_boxes_are_the_connected_components():
    (boxes,) = boxes_from_labels(two_ships(), jitter=0)
    assert sorted(boxes.tolist()) == [[5.0, 10.0, 14.0, 19.0], [30.0, 40.0, 33.0, 59.0]]


def test_jitter_only_grows_boxes_by_0_to_20_px_per_side():
    exact = torch.tensor(sorted(boxes_from_labels(two_ships(), jitter=0)[0].tolist()))
    rng = np.random.default_rng(0)
    moved = [torch.tensor(sorted(boxes_from_labels(two_ships(), generator=rng)[0].tolist())) for _ in range(50)]
    growth = torch.stack([m - exact for m in moved]) * torch.tensor([-1.0, -1.0, 1.0, 1.0])
    # every jittered box encloses its exact box: no side ever moves inward
    assert (growth >= 0).all() and growth.max() <= 20 and growth.max() > 0
    assert all(((m >= 0) & (m <= 63)).all() for m in moved)


def test_jittered_boxes_enclose_small_objects_and_clip_to_the_image():
    labels = torch.zeros(1, 64, 64, dtype=torch.long)
    labels[0, 0:6, 0:6] = 1          # corner object: top/left growth is clipped at 0
    labels[0, 58:64, 40:48] = 1      # bottom edge: bottom growth clipped at 63
    labels[0, 30:36, 20:26] = 1      # interior 6 px object
    (exact,) = boxes_from_labels(labels, jitter=0)  # components in raster order: corner, interior, bottom
    rng = np.random.default_rng(1)
    for _ in range(100):
        (moved,) = boxes_from_labels(labels, generator=rng)
        assert (moved[:, :2] <= exact[:, :2]).all() and (moved[:, 2:] >= exact[:, 2:]).all()
        assert ((moved >= 0) & (moved <= 63)).all()
        assert (moved[0, :2] == 0).all() and moved[2, 3] == 63  # clipped, not wrapped or shifted
        assert ((moved - exact).abs() <= 20).all()


def test_diagonal_pixels_form_one_object():
    labels = torch.zeros(1, 16, 16, dtype=torch.long)
    labels[0, 3, 3] = labels[0, 4, 4] = 1
    (boxes,) = boxes_from_labels(labels, jitter=0)
    assert boxes.tolist() == [[3.0, 3.0, 4.0, 4.0]]


def test_negative_jitter_is_refused():
    with pytest.raises(ValueError, match="jitter"):
        boxes_from_labels(two_ships(), jitter=-1)


def test_box_head_needs_two_classes(tiny_segmenter):
    with pytest.raises(ValueError, match="num_classes must be 2"):
        tiny_segmenter("parser", options=BOX_HEAD)


def test_box_head_outputs_background_and_object_logits_per_image(tiny_segmenter, images):
    seg = tiny_segmenter("parser", options=BOX_HEAD, num_classes=2)
    assert seg.takes_boxes
    boxes = [torch.tensor([[10.0, 10.0, 100.0, 80.0]]), torch.tensor([[0.0, 0.0, 50.0, 50.0], [120.0, 100.0, 250.0, 200.0]])]
    with torch.no_grad():
        logits = seg(images, boxes)
        assert logits.shape == (2, 2, 256, 256)
        assert torch.equal(logits[:, 0], torch.zeros_like(logits[:, 0]))
        apart = torch.cat([seg(images[:1], boxes[:1]), seg(images[1:], boxes[1:])])
        assert torch.allclose(logits, apart, atol=1e-5)
        assert not torch.allclose(seg(images, [boxes[1], boxes[0]]), logits)
        assert seg(images).shape == (2, 2, 256, 256)  # no boxes: whole-image box


def test_box_head_trains_the_decoder(tiny_segmenter, images):
    seg = tiny_segmenter("parser", options=BOX_HEAD, num_classes=2)
    labels = torch.zeros(2, 256, 256, dtype=torch.long)
    labels[:, 60:120, 40:90] = 1
    F.cross_entropy(seg(images, boxes_from_labels(labels)), labels).backward()
    trainable = seg.named_trainable_parameters()
    assert not any("iou_prediction_head" in n for n in trainable)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in trainable.values())


def test_classwise_head_refuses_boxes(tiny_segmenter, images):
    with pytest.raises(ValueError, match="box_prompt"):
        tiny_segmenter("decoder_only")(images, [torch.zeros(1, 4)] * 2)
