"""Pixel grids of image/label pairs: the same CRS, transform and size, or a label reprojected onto the image grid.

Every pair is checked on its own (files in one dataset may each have their own CRS). A pair where
either file has no georeference (PNG, JPEG, BMP, plain TIFF) only needs the same size. A
georeferenced label on another grid is an error, or with ``data.label_grid: reproject`` it is
resampled onto the image grid with nearest neighbour (``rasterio.warp.reproject``) into a GeoTIFF
whose mask marks the pixels the label does not cover (they become ``ignore_index``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.warp import reproject, transform_bounds
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from samsar.data.errors import DataError
from samsar.data.rasters import RasterInfo, ignore_missing_georeference

# Offsets may differ by this share of a pixel, scales and shears by this relative amount.
_OFFSET_TOLERANCE = 1e-3
_SCALE_TOLERANCE = 1e-6
_STRIP_PIXELS = 1 << 20


@dataclass(frozen=True)
class Grid:
    """Where a raster's pixels lie: CRS, affine transform and size."""

    crs: CRS | None
    transform: Affine
    height: int
    width: int

    @classmethod
    def of(cls, info: RasterInfo) -> "Grid | None":
        """The grid of a georeferenced raster, else None."""
        return cls(info.crs, info.transform, info.height, info.width) if info.georeferenced else None

    def describe(self) -> str:
        crs = self.crs.to_string() if self.crs is not None else "no CRS"
        t = self.transform
        return f"{crs}, {abs(t.a):g} x {abs(t.e):g} pixels, origin ({t.c:.6g}, {t.f:.6g}), {self.height}x{self.width}"

    def bounds(self) -> tuple[float, float, float, float]:
        """``(left, bottom, right, top)`` in the grid's CRS."""
        xs, ys = zip(*(self.transform @ (c, r) for c in (0, self.width) for r in (0, self.height)))
        return min(xs), min(ys), max(xs), max(ys)

    def matches(self, other: "Grid") -> bool:
        """Same CRS, size and transform (up to rounding)."""
        if (self.height, self.width) != (other.height, other.width) or self.crs != other.crs:
            return False
        a, b = self.transform, other.transform
        pixel = max(abs(a.a), abs(a.e), abs(a.b), abs(a.d))
        scale_ok = all(abs(x - y) <= _SCALE_TOLERANCE * pixel for x, y in ((a.a, b.a), (a.b, b.b), (a.d, b.d), (a.e, b.e)))
        return scale_ok and abs(a.c - b.c) <= _OFFSET_TOLERANCE * pixel and abs(a.f - b.f) <= _OFFSET_TOLERANCE * pixel


def check_pair_grid(image: RasterInfo, label: RasterInfo, policy: str) -> bool:
    """Whether the label must be reprojected onto the image grid; DataError when it may not be."""
    image_grid, label_grid = Grid.of(image), Grid.of(label)
    if image_grid is None or label_grid is None:
        if (label.height, label.width) != (image.height, image.width):
            raise DataError(
                f"{label.path}: label is {label.height}x{label.width} but its image is "
                f"{image.height}x{image.width}; image and label must cover the same pixels"
            )
        return False
    if image_grid.matches(label_grid):
        return False
    if policy != "reproject":
        raise DataError(
            f"{label.path}: label grid ({label_grid.describe()}) differs from the grid of its image {image.path} "
            f"({image_grid.describe()}); fix the label, or set data.label_grid: reproject to resample it onto the "
            "image grid (nearest neighbour)"
        )
    if image_grid.crs is None or label_grid.crs is None:
        raise DataError(
            f"{label.path}: label and image {image.path} are on different grids and one has no CRS, so the label "
            "cannot be reprojected; give both files a CRS or put the label on the image grid"
        )
    left, bottom, right, top = transform_bounds(label_grid.crs, image_grid.crs, *label_grid.bounds())
    i_left, i_bottom, i_right, i_top = image_grid.bounds()
    if left >= i_right or right <= i_left or bottom >= i_top or top <= i_bottom:
        raise DataError(
            f"{label.path}: label ({label_grid.describe()}) does not overlap its image {image.path} "
            f"({image_grid.describe()}); pair the right files"
        )
    return True


def reproject_label(label: RasterInfo, image: RasterInfo, out: Path) -> Path:
    """Write ``label`` resampled onto ``image``'s grid (nearest neighbour) as GeoTIFF ``out``.

    The output keeps the label's dtype and bands; its mask is 0 where the label gives no value
    (outside its footprint or at its nodata). Written a strip of rows at a time.
    """
    grid = Grid.of(image)
    profile = dict(
        driver="GTiff", height=grid.height, width=grid.width, count=label.channels, dtype=label.dtype,
        crs=grid.crs, transform=grid.transform, compress="deflate",
    )
    if grid.height >= 256 and grid.width >= 256:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    rows = max(1, _STRIP_PIXELS // grid.width)
    try:
        with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), ignore_missing_georeference(), rasterio.open(label.path) as src, \
                rasterio.open(out, "w", **profile) as dst:
            for row in range(0, grid.height, rows):
                window = Window(0, row, grid.width, min(rows, grid.height - row))
                dest = np.full((label.channels, window.height, grid.width), np.nan, dtype=np.float64)
                reproject(
                    source=rasterio.band(src, list(range(1, label.channels + 1))), destination=dest,
                    src_transform=src.transform, src_crs=src.crs, src_nodata=src.nodata,
                    dst_transform=window_transform(window, grid.transform), dst_crs=grid.crs, dst_nodata=np.nan,
                    resampling=Resampling.nearest, init_dest_nodata=True,
                )
                missing = np.isnan(dest).any(axis=0)
                dst.write(np.where(np.isnan(dest), 0, dest).astype(label.dtype), window=window)
                dst.write_mask(np.where(missing, 0, 255).astype(np.uint8), window=window)
    except RasterioError as exc:
        raise DataError(f"{label.path}: cannot reproject the label onto the grid of {image.path} ({exc})") from exc
    return out
