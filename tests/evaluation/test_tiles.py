"""Tile prediction: resizing to the model's input size and the global confusion matrix."""

import numpy as np
import torch
from torch import nn

from samsar.evaluation.metrics import confusion_matrix
from samsar.evaluation.tiles import autocast_for, dataset_confusion, tile_logits


class ThresholdModel(nn.Module):
    """Two-class 'segmenter': class 1 where the first channel is above 0.5; records input sizes."""

    def __init__(self):
        super().__init__()
        self.sizes = []

    def forward(self, images):
        self.sizes.append(tuple(images.shape[-2:]))
        bright = (images[:, :1] > 0.5).float()
        return torch.cat([1 - bright, bright], dim=1) * 10


class Tiles(torch.utils.data.Dataset):
    def __init__(self, n=5, size=32):
        g = torch.Generator().manual_seed(0)
        self.images = torch.rand(n, 3, size, size, generator=g)
        self.labels = (self.images[:, 0] > 0.5).long()
        self.labels[0, :4] = 255  # unlabelled strip
        self.labels[1] = 1 - self.labels[1]  # one tile labelled the other way round

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return {"image": self.images[i], "label": self.labels[i], "tile_id": f"t{i}"}


def test_tile_logits_resizes_to_the_model_and_back():
    model = ThresholdModel()
    logits = tile_logits(model, torch.rand(2, 3, 32, 32), image_size=16)
    assert model.sizes == [(16, 16)] and logits.shape == (2, 2, 32, 32)
    same = tile_logits(model, torch.rand(1, 3, 16, 16), image_size=16)
    assert model.sizes[-1] == (16, 16) and same.shape == (1, 2, 16, 16)


def test_dataset_confusion_sums_over_tiles_and_subsets():
    tiles = Tiles()
    model = ThresholdModel()
    cm = dataset_confusion(model, tiles, 2, 255, image_size=32, device=torch.device("cpu"), batch_size=2)
    pred = (tiles.images[:, 0] > 0.5).long().numpy()
    expected = confusion_matrix(pred, tiles.labels.numpy(), 2, 255)
    assert np.array_equal(cm, expected)
    assert cm.sum() == 5 * 32 * 32 - 4 * 32
    assert np.trace(cm) == cm.sum() - 32 * 32  # only the flipped tile is wrong
    part = dataset_confusion(model, tiles, 2, 255, 32, torch.device("cpu"), indices=[2, 3])
    assert part.sum() == 2 * 32 * 32 and np.trace(part) == part.sum()


def test_auto_precision_uses_bf16_only_where_the_cpu_has_it(monkeypatch):
    cpu = torch.device("cpu")
    for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        monkeypatch.setattr(torch.cpu, name, lambda: False, raising=False)
    with autocast_for(cpu, "auto"):
        assert not torch.is_autocast_enabled("cpu")
    with autocast_for(cpu, "bf16"):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    with autocast_for(cpu, "auto"):
        assert torch.is_autocast_enabled("cpu")
    with autocast_for(cpu, "fp32"):
        assert not torch.is_autocast_enabled("cpu")
