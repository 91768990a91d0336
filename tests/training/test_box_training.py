"""Training and validation of a box_prompt variant get the truth's boxes (jittered in training, exact in validation)."""

from __future__ import annotations

import pytest
import torch
import yaml
from skimage.measure import label as components, regionprops

from samsar.config import load_params
from samsar.models.box_prompt import BoxPromptDecoder, boxes_from_labels
from samsar.training.losses import SegmentationLoss
from samsar.training.loop import train_variant

TWO_CLASSES = {
    "data": {"name": "tiny-buildings",
             "classes": [{"name": "background", "color": [0, 0, 0]}, {"name": "building", "color": [255, 0, 0]}],
             "synthetic": {"n_scenes": 3, "scene_size": 128, "looks": 1, "seed": 0}},
    "preprocess": {"tile_size": 64, "stride": 64, "split": {"val": 0.2, "test": 0.2, "block_size": 64, "seed": 0}},
    "model": {"backbone": "tiny", "image_size": 64},
    "pretrain": {"enabled": False},
    "variants": ["decoder_only-box"],
    "train": {"seeds": [0], "epochs": 2, "max_steps": 3, "batch_size": 2, "warmup_steps": 2, "checkpoint_every": 2,
              "augment": True, "feature_cache": False},
    "evaluate": {"batch_size": 4},
    "tracking": {"enabled": False},
}


def write_params(root, raw):
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    return root / "params.yaml"


@pytest.fixture(scope="module")
def box_project(tmp_path_factory):
    from samsar.data.prepare import prepare
    from samsar.data.preprocess import preprocess

    params = load_params(write_params(tmp_path_factory.mktemp("box_project"), TWO_CLASSES))
    prepare(params)
    preprocess(params)
    return params


def _spy(monkeypatch):
    """Record (grad enabled, boxes) of every box-head call and the labels of every training loss."""
    calls, losses = [], []
    head_forward, loss_forward = BoxPromptDecoder.forward, SegmentationLoss.forward

    def head(self, *args, boxes=None, **kwargs):
        calls.append((torch.is_grad_enabled(), [b.clone() for b in boxes]))
        return head_forward(self, *args, boxes=boxes, **kwargs)

    def loss(self, logits, target):
        losses.append(target.clone())
        return loss_forward(self, logits, target)

    monkeypatch.setattr(BoxPromptDecoder, "forward", head)
    monkeypatch.setattr(SegmentationLoss, "forward", loss)
    return calls, losses


@pytest.mark.parametrize("feature_cache", [False, True])
def test_training_gets_jittered_truth_boxes_and_validation_exact_ones(box_project, monkeypatch, tmp_path, feature_cache):
    params = load_params(write_params(tmp_path / "project", {**TWO_CLASSES, "data": {
        **TWO_CLASSES["data"], "processed_dir": str(box_project.processed_dir)},
        "train": {**TWO_CLASSES["train"], "feature_cache": feature_cache}}))
    calls, losses = _spy(monkeypatch)
    summary = train_variant(params, "decoder_only-box")
    assert summary["runs"][0]["steps"] == 3 and summary["runs"][0]["feature_cache"] is feature_cache
    training = [boxes for grad, boxes in calls if grad]
    validation = [boxes for grad, boxes in calls if not grad]
    assert len(training) == len(losses) == 3 and validation
    seen = 0
    for boxes, labels in zip(training, losses):  # labels as augmented: what the loss compares with
        for image_boxes, label in zip(boxes, labels):
            regions = regionprops(components(label.numpy() == 1, connectivity=2))
            assert len(image_boxes) == len(regions)
            for region, (x0, y0, x1, y1) in zip(regions, image_boxes.tolist()):
                row0, col0, row1, col1 = region.bbox
                assert x0 <= col0 and y0 <= row0 and x1 >= col1 - 1 and y1 >= row1 - 1  # encloses its object
                assert col0 - x0 <= 20 and y1 - (row1 - 1) <= 20
            seen += len(regions)
    assert seen > 0, "the batches held no object: the check above would be vacuous"
    assert any(not torch.equal(b, e) for boxes, labels in zip(training, losses)
               for b, e in zip(boxes, boxes_from_labels(labels, jitter=0))), "training boxes are jittered"
    from samsar.data.dataset import TileDataset

    val = TileDataset(box_project.processed_dir, "val")
    exact = [b for i in range(len(val)) for b in boxes_from_labels(val[i]["label"][None], jitter=0)]
    got = [b for boxes in validation for b in boxes]
    assert len(got) == 2 * len(exact)  # one validation round per epoch
    assert all(torch.equal(g, e) for g, e in zip(got, exact + exact))


def test_box_jitter_is_reproducible(box_project, monkeypatch, tmp_path):
    import shutil

    runs = []
    for name in ("a", "b"):
        calls, _ = _spy(monkeypatch)
        params = load_params(write_params(tmp_path / name, {**TWO_CLASSES, "data": {
            **TWO_CLASSES["data"], "processed_dir": str(box_project.processed_dir)}}))
        train_variant(params, "decoder_only-box")
        runs.append([boxes for grad, boxes in calls if grad])
        shutil.rmtree(tmp_path / name)
        monkeypatch.undo()
    assert len(runs[0]) == len(runs[1]) == 3
    assert all(torch.equal(a, b) for x, y in zip(*runs) for a, b in zip(x, y))
