"""Prediction window stride and blending weights (the window grid itself: tests/data/test_splits_tiling.py)."""

import numpy as np
import pytest

from samsar.inference.windows import blend_weights, window_stride


def test_stride_from_overlap():
    assert window_stride(256, 0.25) == 192
    assert window_stride(256, 0.0) == 256
    with pytest.raises(ValueError):
        window_stride(256, 1.0)


def test_blend_weights_taper_from_centre_to_floor():
    w = blend_weights(64, floor=0.01)
    assert w.shape == (64, 64) and w.dtype == np.float32
    assert np.allclose(w, w.T) and np.allclose(w, w[::-1, ::-1])
    assert w.min() == pytest.approx(0.01)
    assert w[31, 31] > 0.99 and w[0, 0] < w[8, 31] < w[20, 31] < w[31, 31]
