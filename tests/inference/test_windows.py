"""Window grid and blending weights."""

import numpy as np
import pytest

from samsar.inference.windows import blend_weights, window_starts, window_stride


@pytest.mark.parametrize("length,window,stride", [(500, 64, 48), (300, 64, 48), (64, 64, 48), (65, 64, 48), (1000, 256, 192), (257, 256, 1)])
def test_windows_cover_every_pixel_and_stay_inside(length, window, stride):
    starts = window_starts(length, window, stride)
    covered = np.zeros(length, dtype=int)
    for s in starts:
        assert 0 <= s and s + window <= length
        covered[s : s + window] += 1
    assert covered.min() >= 1
    assert starts[-1] == length - window
    assert all(0 < b - a <= stride for a, b in zip(starts, starts[1:]))


def test_axis_shorter_than_window_gets_one_window_at_zero():
    assert window_starts(37, 64, 48) == [0]


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
