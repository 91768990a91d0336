"""Sliding-window blending: no seams, streaming in strips, nodata handling."""

import numpy as np
import pytest
import torch
from torch import nn

from samsar.data.scaling import SarScaler
from samsar.inference.outputs import NODATA_CLASS
from samsar.inference import predictor as predictor_module
from samsar.inference.predictor import Predictor

from predict_helpers import INTENSITY_SCALER, PAULI_SCALER, meta_for, speckle_scene

WINDOW = 64


class ConstantLogits(nn.Module):
    """Same logits at every pixel of every window."""

    def __init__(self, logits):
        super().__init__()
        self.register_buffer("logits", torch.tensor(logits, dtype=torch.float32))

    def forward(self, x):
        return self.logits[None, :, None, None].expand(x.shape[0], -1, *x.shape[-2:])


class Pointwise(nn.Module):
    """A per-pixel MLP: exactly translation-equivariant, so every window agrees with the full image."""

    def __init__(self, classes: int = 3):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(3, 8, 1), nn.Tanh(), nn.Conv2d(8, classes, 1))

    def forward(self, x):
        return self.net(x) * 5.0


def _direct(model, raw):
    """Softmax of the model on the whole (unwindowed) scaled image."""
    x = torch.from_numpy(INTENSITY_SCALER.transform(raw))[None]
    with torch.no_grad():
        return model(x)[0].softmax(0).numpy()


def test_constant_logit_model_gives_its_class_everywhere():
    predictor = Predictor(ConstantLogits([0.0, 3.0, 1.0]), meta_for(INTENSITY_SCALER, WINDOW), device="cpu", batch_size=4)
    classes = predictor.predict_array(speckle_scene(300, 500))
    assert classes.shape == (300, 500) and classes.dtype == np.uint8
    assert (classes == 1).all()


@pytest.mark.parametrize("shape,overlap", [((300, 500), 0.25), ((300, 500), 0.75), ((300, 500), 0.0), ((37, 50), 0.25), ((64, 200), 0.25)])
def test_blended_prediction_equals_full_image_prediction(shape, overlap, monkeypatch):
    """No seams: at window borders, column-chunk borders and everywhere else, blending reproduces the direct result."""
    monkeypatch.setattr(predictor_module, "COLUMN_CHUNK", 70)
    model = Pointwise()
    raw = speckle_scene(*shape, seed=1)
    predictor = Predictor(model, meta_for(INTENSITY_SCALER, WINDOW), device="cpu", batch_size=3, overlap=overlap)
    read = lambda r0, r1, c0, c1: (raw[r0:r1, c0:c1], np.ones((r1 - r0, c1 - c0), bool))  # noqa: E731
    blocks = list(predictor.stream(read, *shape))
    classes = np.concatenate([b.classes for b in blocks])
    confidence = np.concatenate([b.confidence for b in blocks])
    direct = _direct(model, raw)
    np.testing.assert_array_equal(classes, direct.argmax(0))
    np.testing.assert_allclose(confidence, direct.max(0), atol=1e-5)
    border = predictor.stride  # first column where the second window starts
    if shape[1] > WINDOW:
        np.testing.assert_array_equal(classes[:, border - 1 : border + 1], direct.argmax(0)[:, border - 1 : border + 1])


def test_scene_streams_top_to_bottom_reading_one_window_of_rows_at_a_time(monkeypatch):
    monkeypatch.setattr(predictor_module, "COLUMN_CHUNK", 40)
    raw = speckle_scene(1000, 90)
    reads = []

    def read_block(r0, r1, c0, c1):
        reads.append((r0, r1, c0, c1))
        return raw[r0:r1, c0:c1], np.ones((r1 - r0, c1 - c0), bool)

    predictor = Predictor(Pointwise(), meta_for(INTENSITY_SCALER, WINDOW), device="cpu")
    rows = [(b.row0, len(b.classes)) for b in predictor.stream(read_block, 1000, 90)]
    assert all(r1 - r0 <= WINDOW and c1 - c0 <= 40 for r0, r1, c0, c1 in reads)
    assert rows[0][0] == 0 and all(a + n == b for (a, n), (b, _) in zip(rows, rows[1:]))
    assert rows[-1][0] + rows[-1][1] == 1000


def test_nodata_pixels_get_nodata_class_and_empty_windows_are_skipped():
    raw = speckle_scene(200, 300)
    raw[:, :100] = np.nan  # covers the first window column entirely
    predictor = Predictor(ConstantLogits([2.0, 0.0, 0.0]), meta_for(INTENSITY_SCALER, WINDOW), device="cpu")
    classes = predictor.predict_array(raw)
    assert (classes[:, :100] == NODATA_CLASS).all() and (classes[:, 100:] == 0).all()
    full = Predictor(ConstantLogits([2.0, 0.0, 0.0]), meta_for(INTENSITY_SCALER, WINDOW), device="cpu")
    full.predict_array(speckle_scene(200, 300))
    assert 0 < predictor.windows_run < full.windows_run


def test_three_band_input_uses_the_three_channel_scaling():
    raw = np.random.default_rng(0).integers(0, 256, size=(70, 90, 3), dtype=np.uint8)
    predictor = Predictor(Pointwise(), meta_for(PAULI_SCALER, WINDOW), device="cpu")
    classes = predictor.predict_array(raw)
    x = torch.from_numpy(PAULI_SCALER.transform(raw))[None]
    with torch.no_grad():
        np.testing.assert_array_equal(classes, predictor.segmenter(x)[0].argmax(0).numpy())
    assert predictor.input_bands == 3


def test_training_nodata_values_and_band_composition_travel_with_the_scaler():
    """A scaler with selected bands, a composed third channel and data.nodata [-9999] (stored in adapter.json
    `scaling`): predict reads the scene exactly so, and -9999 pixels (not declared in the file) are nodata."""
    scaler = SarScaler("intensity", low=(-25.0, -30.0, 0.0), high=(0.0, -5.0, 15.0), bands=(2, 0), band_names=("VV", "VH"),
                       file_bands=3, compose=("VV", "VH", "VV-VH"), nodata=(-9999.0,))
    rng = np.random.default_rng(0)
    raw = rng.exponential(0.05, size=(70, 90, 3)).astype(np.float32)
    raw[:10, :, 2] = -9999.0  # VV (band 3) has no data in the top rows
    raw[:, :5, 1] = -9999.0  # an unused band's -9999 does not matter
    predictor = Predictor(Pointwise(), meta_for(SarScaler.from_dict(scaler.to_dict()), WINDOW), device="cpu")
    assert predictor.input_bands == 3
    classes = predictor.predict_array(raw)
    assert (classes[:10] == NODATA_CLASS).all() and (classes[10:] != NODATA_CLASS).all()
    x = torch.from_numpy(scaler.transform(raw[10:]))[None]
    vv, vh = 10 * np.log10(raw[10:, :, 2]), 10 * np.log10(raw[10:, :, 0])
    np.testing.assert_allclose(x[0, 2].numpy(), np.clip((vv - vh) / 15.0, 0, 1), atol=1e-5)
    with torch.no_grad():
        np.testing.assert_array_equal(classes[10:], predictor.segmenter(x)[0].argmax(0).numpy())
