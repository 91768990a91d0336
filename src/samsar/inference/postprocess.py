"""Minimum mapping unit for class maps: regions and holes smaller than N pixels are absorbed.

A region is a connected set (8-connectivity, ``skimage.measure.label``) of pixels of one class.
Every region smaller than ``min_pixels`` is removed and its pixels take the class of the nearest
kept pixel (``scipy.ndimage.distance_transform_edt``), so an island takes the class around it and
a hole smaller than N (one or more small regions enclosed by a class) is filled with that class.
Nodata pixels are never changed and never spread.

:class:`MinimumMappingUnit` applies this to a class map that arrives in bands of rows, holding
``min_pixels`` rows of context above and below the rows it finishes: a region smaller than N
pixels spans fewer than N rows, so whether a region is small is decided exactly. A removed pixel
takes the nearest kept pixel within that context; only a chain of removed regions longer than N
rows could find a different one than on the whole map.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.measure import label

from samsar.inference.outputs import NODATA_CLASS

MMU_TAG = "MIN_MAPPING_UNIT"  # GeoTIFF dataset tag: the minimum mapping unit in pixels
MMU_RULE_TAG = "MIN_MAPPING_UNIT_RULE"
MMU_RULE = ("8-connected regions and holes smaller than MIN_MAPPING_UNIT pixels take the class of the nearest "
            "kept pixel")


def mmu_tags(min_pixels: int) -> dict[str, str]:
    """The GeoTIFF tags that record a minimum mapping unit."""
    return {MMU_TAG: str(int(min_pixels)), MMU_RULE_TAG: MMU_RULE}


def remove_small_regions(classes: np.ndarray, min_pixels: int, nodata: int = NODATA_CLASS,
                         keep_top: bool = False, keep_bottom: bool = False) -> np.ndarray:
    """``classes`` (2-D) with every region smaller than ``min_pixels`` reassigned (see module doc).

    ``keep_top`` / ``keep_bottom``: regions touching the first / last row are kept whatever their
    size (the map continues beyond that edge). Returns a new array; ``min_pixels <= 1`` changes nothing.
    """
    classes = np.asarray(classes)
    if classes.ndim != 2:
        raise ValueError(f"expected a 2-D class map, got shape {classes.shape}")
    out = classes.copy()
    if min_pixels <= 1 or classes.size == 0:
        return out
    regions = label(classes, background=nodata, connectivity=2)
    small = np.bincount(regions.ravel()) < min_pixels
    small[0] = False  # nodata
    for edge, keep in ((regions[0], keep_top), (regions[-1], keep_bottom)):
        if keep:
            small[np.unique(edge)] = False
    removed = small[regions]
    if not removed.any():
        return out
    sources = ~(removed | (classes == nodata))
    if not sources.any():
        return out  # nothing kept to take a class from
    nearest = ndimage.distance_transform_edt(~sources, return_distances=False, return_indices=True)
    out[removed] = classes[nearest[0][removed], nearest[1][removed]]
    return out


class MinimumMappingUnit:
    """Streaming :func:`remove_small_regions` over a ``height``-row class map arriving top to bottom.

    :meth:`push` takes the next band of rows and returns the ``(row0, rows)`` bands it could finish
    (each with ``min_pixels`` rows of context below, or the map's end); :meth:`finish` the rest.
    """

    def __init__(self, min_pixels: int, height: int, nodata: int = NODATA_CLASS) -> None:
        if min_pixels < 1:
            raise ValueError(f"min_pixels must be >= 1, got {min_pixels}")
        self.min_pixels, self.height, self.nodata = int(min_pixels), int(height), nodata
        self.margin = self.min_pixels
        self._buffer: np.ndarray | None = None  # scene rows [_top, _end)
        self._top = self._end = self._done = 0

    def push(self, row0: int, rows: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """Add rows ``[row0, row0 + len(rows))`` (contiguous with the previous band)."""
        if row0 != self._end:
            raise ValueError(f"rows must arrive in order: expected row {self._end}, got {row0}")
        rows = np.asarray(rows)
        self._buffer = rows.copy() if self._buffer is None else np.concatenate([self._buffer, rows])
        self._end += len(rows)
        return self._emit(self.height if self._end >= self.height else self._end - self.margin)

    def finish(self) -> list[tuple[int, np.ndarray]]:
        """The rows not yet returned (call once the last band is pushed)."""
        return self._emit(self._end)

    def _emit(self, core_end: int) -> list[tuple[int, np.ndarray]]:
        core_end = min(core_end, self._end)
        if self._buffer is None or core_end <= self._done:
            return []
        top = max(self._top, self._done - self.margin)
        bottom = min(self._end, core_end + self.margin)
        window = self._buffer[top - self._top : bottom - self._top]
        cleaned = remove_small_regions(window, self.min_pixels, self.nodata,
                                       keep_top=top > 0, keep_bottom=bottom < self.height)
        done = (self._done, cleaned[self._done - top : core_end - top])
        self._done = core_end
        keep_from = max(self._top, self._done - self.margin)  # context the next window needs
        self._buffer = self._buffer[keep_from - self._top :]
        self._top = keep_from
        return [done]
