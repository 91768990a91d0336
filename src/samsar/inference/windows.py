"""Sliding-window geometry and blending weights for scene-scale prediction."""

from __future__ import annotations

import numpy as np

# Weight given to the outermost window pixels. Scene borders are only ever seen by window
# edges, so the weight must stay positive there; small enough that interior pixels are
# decided by the window centres.
DEFAULT_WEIGHT_FLOOR = 1e-2


def window_stride(window: int, overlap: float) -> int:
    """Step between neighbouring windows for an overlap fraction in ``[0, 1)``."""
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    return max(1, round(window * (1.0 - overlap)))


def blend_weights(window: int, floor: float = DEFAULT_WEIGHT_FLOOR) -> np.ndarray:
    """``(window, window)`` float32 weight: separable Hann (sin^2) taper, floored at ``floor``.

    Overlapping windows are averaged with these weights, so each pixel is decided mostly by
    the windows it sits near the centre of and the result has no seams at window edges.
    """
    centres = (np.arange(window, dtype=np.float64) + 0.5) / window
    taper = np.sin(np.pi * centres) ** 2
    return np.maximum(np.outer(taper, taper), floor).astype(np.float32)
