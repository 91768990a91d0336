"""Generated Sentinel-1-like rasters: dual-pol (VV, VH) backscatter over a known class map, in UTM at 10 m."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS

UTM33 = CRS.from_epsg(32633)
ORIGIN = (500000.0, 4600000.0)
TEN_M = Affine(10.0, 0.0, ORIGIN[0], 0.0, -10.0, ORIGIN[1])
# Mean backscatter (dB) per class: water, field, urban; VH sits about 7 dB below VV.
VV_DB = np.array([-20.0, -11.0, -5.0])
VH_DB = VV_DB - 7.0
S1_CLASSES = [
    {"name": "water", "color": [0, 0, 255]},
    {"name": "field", "color": [0, 255, 0]},
    {"name": "urban", "color": [255, 0, 0]},
]


def class_map(height: int, width: int, block: int = 32) -> np.ndarray:
    """uint8 classes 0..2 in square blocks of ``block`` pixels (a fixed, easily predicted layout)."""
    rows, cols = np.indices((height, width)) // block
    return ((rows + 2 * cols) % 3).astype(np.uint8)


def s1_power(classes: np.ndarray, seed: int = 0) -> np.ndarray:
    """float32 ``(H, W, 2)`` linear power (VV, VH) with single-look speckle around each class's mean."""
    rng = np.random.default_rng(seed)
    means = np.stack([10 ** (VV_DB[classes] / 10), 10 ** (VH_DB[classes] / 10)], axis=-1)
    return (means * rng.exponential(1.0, size=means.shape)).astype(np.float32)


def write_s1(path: Path, data: np.ndarray, *, nodata=None, crs=UTM33, transform=TEN_M, descriptions=("VV", "VH")) -> Path:
    """``(H, W, C)`` or ``(H, W)`` as a georeferenced GeoTIFF with band descriptions and an optional nodata value."""
    bands = data[None] if data.ndim == 2 else np.moveaxis(data, -1, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = dict(driver="GTiff", height=bands.shape[1], width=bands.shape[2], count=bands.shape[0],
                   dtype=bands.dtype, crs=crs, transform=transform, nodata=nodata)
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(bands)
        for i, name in enumerate(descriptions[: bands.shape[0]], start=1):
            ds.set_band_description(i, name)
    return path
