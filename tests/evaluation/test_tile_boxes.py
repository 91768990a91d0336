"""Evaluation of a box_prompt segmenter: exact truth boxes (scaled to the model input), empty tiles background."""

import torch

from samsar.evaluation.tiles import predict_tiles
from samsar.models.box_prompt import BoxPromptDecoder, boxes_from_labels
from samsar.models.variants import build_segmenter


class Tiles(torch.utils.data.Dataset):
    """32 px tiles: two with objects, one without."""

    def __init__(self):
        self.images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
        self.labels = torch.zeros(3, 32, 32, dtype=torch.long)
        self.labels[0, 2:6, 3:9] = 1
        self.labels[0, 20:30, 20:24] = 1
        self.labels[1, 10:12, 0:32] = 1
        self.labels[1, 0:2, 0:2] = 255  # ignored pixels are no object

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return {"image": self.images[i], "label": self.labels[i], "tile_id": f"t{i}"}


def test_evaluation_prompts_exact_truth_boxes_scaled_to_the_model(monkeypatch):
    segmenter = build_segmenter("decoder_only-box", backbone="tiny", image_size=64, num_classes=2)
    received = []
    forward = BoxPromptDecoder.forward

    def spy(self, *args, boxes=None, **kwargs):
        received.extend(b.clone() for b in boxes)
        return forward(self, *args, boxes=boxes, **kwargs)

    monkeypatch.setattr(BoxPromptDecoder, "forward", spy)
    tiles = Tiles()
    preds = [p for pred, _, _ in predict_tiles(segmenter, tiles, 64, torch.device("cpu"), batch_size=2) for p in pred]
    exact = boxes_from_labels(tiles.labels, jitter=0)
    assert [len(b) for b in exact] == [2, 1, 0]
    assert len(received) == 3
    assert all(torch.equal(r, e * 2) for r, e in zip(received, exact))  # 32 px tiles -> 64 px model input
    assert (preds[2] == 0).all()  # no object, no box: background
