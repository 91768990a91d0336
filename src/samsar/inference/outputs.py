"""Side outputs of a scene prediction: colour table, downsampled preview, per-class area table.

Each is accumulated band by band while the class map streams past, so none needs the whole map.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

NODATA_CLASS = 255  # class-map value of pixels without a prediction (input nodata)
PREVIEW_MAX_SIDE = 1024


def colormap(colors: Sequence[Sequence[int]]) -> dict[int, tuple[int, int, int, int]]:
    """GeoTIFF colour table: class index -> RGBA; the nodata value is transparent."""
    table = {i: (int(r), int(g), int(b), 255) for i, (r, g, b) in enumerate(colors)}
    table[NODATA_CLASS] = (0, 0, 0, 0)
    return table


class ClassCounter:
    """Per-class pixel counts over the valid pixels of a class map."""

    def __init__(self, num_classes: int) -> None:
        self.counts = np.zeros(num_classes, dtype=np.int64)

    def add(self, classes: np.ndarray) -> None:
        """Count a band of class indices (``NODATA_CLASS`` pixels are not counted)."""
        self.counts += np.bincount(classes.ravel(), minlength=256)[: len(self.counts)]

    @property
    def total(self) -> int:
        return int(self.counts.sum())


class PreviewSampler:
    """Nearest-neighbour downsampling of a class map that arrives in bands of rows."""

    def __init__(self, height: int, width: int, max_side: int = PREVIEW_MAX_SIDE) -> None:
        self.step = max(1, math.ceil(max(height, width) / max_side))
        # Allocated once: small per-band copies kept alive between large temporaries would
        # fragment the heap and let resident memory creep up with the scene height.
        self._classes = np.full((math.ceil(height / self.step), math.ceil(width / self.step)), NODATA_CLASS, dtype=np.uint8)

    def add(self, row0: int, classes: np.ndarray) -> None:
        """Sample the band of rows starting at scene row ``row0``."""
        first = -row0 % self.step  # first row in this band whose scene row is a multiple of step
        sampled = classes[first :: self.step, :: self.step]
        top = (row0 + first) // self.step
        self._classes[top : top + len(sampled)] = sampled

    def write_png(self, path: Path, colors: Sequence[Sequence[int]]) -> None:
        """Coloured RGBA PNG; nodata is transparent."""
        palette = np.zeros((256, 4), dtype=np.uint8)
        for index, rgba in colormap(colors).items():
            palette[index] = rgba
        Image.fromarray(palette[self._classes]).save(path, format="PNG")


def write_area_table(
    path: Path, class_names: Sequence[str], counts: np.ndarray, pixel_area_km2: float | None
) -> None:
    """CSV ``class_index, class, pixels, fraction, area_km2``; ``area_km2`` is left empty when the
    scene has no projected CRS (areas then exist in pixels only)."""
    total = max(int(counts.sum()), 1)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["class_index", "class", "pixels", "fraction", "area_km2"])
        for index, (name, count) in enumerate(zip(class_names, counts)):
            area = "" if pixel_area_km2 is None else f"{count * pixel_area_km2:.6f}"
            writer.writerow([index, name, int(count), f"{count / total:.6f}", area])
