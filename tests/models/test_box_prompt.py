"""The box-prompt binary head and training boxes from label masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from samsar.config import BoxPromptOptions, VariantOptions
from samsar.models.box_prompt import EMPTY_LOGIT, boxes_from_labels, scale_boxes

BOX_HEAD = VariantOptions(head="box_prompt")


def two_ships() -> torch.Tensor:
    labels = torch.zeros(1, 64, 64, dtype=torch.long)
    labels[0, 10:20, 5:15] = 1
    labels[0, 40:60, 30:34] = 1
    return labels


def test_boxes_are_the_connected_components():
    (boxes,) = boxes_from_labels(two_ships(), jitter=0)
    assert sorted(boxes.tolist()) == [[5.0, 10.0, 14.0, 19.0], [30.0, 40.0, 33.0, 59.0]]


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
    with pytest.raises(ValueError, match="needs boxes"):  # no silent whole-image prompt
        seg(images)


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


def random_masks(rng: np.random.Generator, n: int = 40, shape: tuple[int, int] = (48, 40)) -> torch.Tensor:
    """Masks of a few random rectangles and speckle-like blobs (any shapes, touching edges too)."""
    height, width = shape
    masks = np.zeros((n, height, width), dtype=np.int64)
    for mask in masks:
        for _ in range(rng.integers(0, 5)):
            r, c = rng.integers(0, height), rng.integers(0, width)
            h, w = rng.integers(1, 12, 2)
            mask[r: r + h, c: c + w] = 1
        mask[rng.random((height, width)) < 0.01] = 1
    return torch.from_numpy(masks)


@pytest.mark.parametrize("mode", ["per_object", "per_image"])
def test_every_jittered_box_contains_its_object_grows_0_to_20_px_and_is_clipped_not_shifted(mode):
    from skimage.measure import label as components, regionprops

    rng = np.random.default_rng(3)
    labels = random_masks(rng)
    height, width = labels.shape[1:]
    growth, at_edge = [], 0
    for _ in range(3):
        for label, boxes in zip(labels, boxes_from_labels(labels, jitter=20, generator=rng, mode=mode)):
            objects = label.numpy() == 1
            if mode == "per_image":
                points = [np.argwhere(objects)] if objects.any() else []
                extents = [(p[:, 0].min(), p[:, 1].min(), p[:, 0].max(), p[:, 1].max()) for p in points]
            else:
                regions = regionprops(components(objects, connectivity=2))
                extents = [(r.bbox[0], r.bbox[1], r.bbox[2] - 1, r.bbox[3] - 1) for r in regions]
            assert len(boxes) == len(extents)
            for (row0, col0, row1, col1), (x0, y0, x1, y1) in zip(extents, boxes.tolist()):
                # encloses its object: no side ever moves inward; at most 20 px out; inside the image
                grown = [col0 - x0, row0 - y0, x1 - col1, y1 - row1]
                assert all(0 <= g <= 20 for g in grown), (grown, mode)
                assert 0 <= x0 and 0 <= y0 and x1 <= width - 1 and y1 <= height - 1
                # an object on the image edge keeps its box side there (clipped, not wrapped or shifted)
                at_edge += (col0 == 0) + (row0 == 0) + (col1 == width - 1) + (row1 == height - 1)
                growth += grown
    # the masks exercise clipping and growth (per image, speckle spans most of the image: little room to grow)
    assert at_edge > 0 and min(growth) == 0 and max(growth) == (20 if mode == "per_object" else max(growth)) > 0


def test_per_image_box_surrounds_all_objects_and_none_without_objects():
    labels = torch.cat([two_ships(), torch.zeros(1, 64, 64, dtype=torch.long)])
    boxes = boxes_from_labels(labels, jitter=0, mode="per_image")
    assert boxes[0].tolist() == [[5.0, 10.0, 33.0, 59.0]]
    assert boxes[1].shape == (0, 4)


def test_truth_boxes_follow_the_box_options(tiny_segmenter):
    options = VariantOptions(head="box_prompt", box_prompt=BoxPromptOptions(boxes="per_image", jitter=5))
    seg = tiny_segmenter("parser", options=options, num_classes=2)
    exact = seg.truth_boxes(two_ships())
    assert exact[0].tolist() == [[5.0, 10.0, 33.0, 59.0]]
    moved = seg.truth_boxes(two_ships(), np.random.default_rng(0))[0][0] - exact[0][0]
    assert ((moved * torch.tensor([-1, -1, 1, 1]) >= 0) & (moved.abs() <= 5)).all()
    assert tiny_segmenter("parser").truth_boxes(two_ships()) is None  # classwise: no prompts


def test_image_without_boxes_is_background_without_a_decoder_call(tiny_segmenter, images, monkeypatch):
    seg = tiny_segmenter("decoder_only", options=BOX_HEAD, num_classes=2)
    calls = []
    decoder_forward = seg.sam.mask_decoder.forward
    monkeypatch.setattr(seg.sam.mask_decoder, "forward", lambda *a, **k: calls.append(1) or decoder_forward(*a, **k))
    with torch.no_grad():
        logits = seg(images, [torch.zeros(0, 4), torch.tensor([[10.0, 10.0, 100.0, 80.0]])])
    assert len(calls) == 1  # only the image with a box
    assert (logits[0].argmax(0) == 0).all() and torch.equal(logits[0, 1], torch.full((256, 256), EMPTY_LOGIT))
    assert not torch.equal(logits[1, 1], torch.full((256, 256), EMPTY_LOGIT))


def test_a_batch_without_boxes_still_backpropagates(tiny_segmenter, images):
    seg = tiny_segmenter("lora-box", num_classes=2)
    labels = torch.zeros(2, 256, 256, dtype=torch.long)
    F.cross_entropy(seg(images, seg.truth_boxes(labels)), labels).backward()  # no error: trained tensors in the graph
    assert all(p.grad is not None and not p.grad.any() for p in seg.named_trainable_parameters().values())


def test_boxes_scale_with_the_image():
    (scaled,) = scale_boxes([torch.tensor([[8.0, 4.0, 16.0, 32.0]])], (64, 32), (128, 128))
    assert scaled.tolist() == [[32.0, 8.0, 64.0, 64.0]]
