"""Reading image and label rasters window by window, with errors that name the file.

TIFF/GeoTIFF go through rasterio and are read one window at a time, so memory is set by the
window, not the scene. PNG, JPEG and BMP have no cheap random access and are decoded whole with
Pillow (which also detects truncated files).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from PIL import Image, UnidentifiedImageError
from rasterio.crs import CRS
from rasterio.enums import MaskFlags
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.windows import Window

from samsar.data.errors import DataError

RASTER_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp")
WINDOWED_SUFFIXES = (".tif", ".tiff")
SUPPORTED_IMAGE_DTYPES = ("uint8", "uint16", "float32", "float64")
SUPPORTED_LABEL_DTYPES = ("uint8", "uint16", "int16", "int32")
# GDAL's block cache defaults to 5 % of RAM; a small fixed cache keeps peak memory set by the
# tile size rather than the scene size.
GDAL_CACHE_MB = 64


@contextlib.contextmanager
def ignore_missing_georeference() -> Iterator[None]:
    """Silence rasterio's NotGeoreferencedWarning: plain TIFF, PNG and BMP files are valid input."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        yield


@dataclass(frozen=True)
class RasterInfo:
    """Shape, type and georeference of a raster as stored (PNG, JPEG and BMP have no georeference)."""

    path: Path
    height: int
    width: int
    channels: int
    dtype: str
    crs: CRS | None = None
    transform: Affine | None = None  # None when the file is not georeferenced
    nodata: float | None = None  # the file's nodata value
    descriptions: tuple[str | None, ...] = ()  # band descriptions, one per band

    @property
    def georeferenced(self) -> bool:
        return self.transform is not None


class Raster:
    """An open image or label file: ``info`` and ``read(row, col, height, width)``.

    ``read`` returns ``(height, width, channels)`` in the stored dtype; a window reaching past the
    edge is padded with ``fill``. Palette images are expanded to RGB unless ``keep_palette_indices``.
    """

    def __init__(self, path: Path | str, *, keep_palette_indices: bool = False):
        self.path = Path(path)
        self._dataset = None
        self._array: np.ndarray | None = None
        if not self.path.is_file():
            raise DataError(f"{self.path}: file not found; check the data paths in params.yaml")
        if self.path.suffix.lower() in WINDOWED_SUFFIXES:
            self._env = rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB)
            self._env.__enter__()
            try:
                with ignore_missing_georeference():
                    self._dataset = rasterio.open(self.path)
            except RasterioError as exc:
                self.close()
                raise DataError(f"{self.path}: not a readable raster ({exc}); re-export or replace the file") from exc
            ds = self._dataset
            georeferenced = ds.crs is not None or ds.transform != Affine.identity()
            self.info = RasterInfo(
                self.path, ds.height, ds.width, ds.count, ds.dtypes[0], ds.crs,
                ds.transform if georeferenced else None, ds.nodata, tuple(ds.descriptions),
            )
        else:
            self._array = _decode_with_pillow(self.path, keep_palette_indices)
            h, w, c = self._array.shape
            self.info = RasterInfo(self.path, h, w, c, str(self._array.dtype))

    def read(self, row: int, col: int, height: int, width: int, fill: float = 0) -> np.ndarray:
        """Pixels ``[row, row+height) x [col, col+width)`` as ``(height, width, channels)``."""
        info = self.info
        r1, c1 = min(row + height, info.height), min(col + width, info.width)
        if self._array is not None:
            inside = self._array[row:r1, col:c1]
        else:
            try:
                with ignore_missing_georeference():
                    data = self._dataset.read(window=Window(col, row, c1 - col, r1 - row))
            except RasterioError as exc:
                raise DataError(
                    f"{self.path}: cannot read rows {row}-{r1}, cols {col}-{c1} ({exc}); "
                    "the file is truncated or corrupt; re-export or replace it"
                ) from exc
            inside = np.moveaxis(data, 0, -1)
        if inside.shape[:2] == (height, width):
            return inside
        out = np.full((height, width, info.channels), fill, dtype=inside.dtype)
        out[: inside.shape[0], : inside.shape[1]] = inside
        return out

    def read_valid(self, row: int, col: int, height: int, width: int, bands: tuple[int, ...] | None = None) -> np.ndarray:
        """``(height, width)`` bool: False where the file's nodata value or mask (GDAL mask bands,
        alpha) marks any of ``bands`` (0-based; default every band) as no data, and past the edge."""
        info = self.info
        r1, c1 = min(row + height, info.height), min(col + width, info.width)
        valid = np.zeros((height, width), dtype=bool)
        indexes = [b + 1 for b in (bands if bands is not None else range(info.channels))]
        if self._dataset is None or all(self._dataset.mask_flag_enums[i - 1] == [MaskFlags.all_valid] for i in indexes):
            valid[: r1 - row, : c1 - col] = True
            return valid
        try:
            with ignore_missing_georeference():
                masks = self._dataset.read_masks(indexes, window=Window(col, row, c1 - col, r1 - row))
        except RasterioError as exc:
            raise DataError(
                f"{self.path}: cannot read the nodata mask of rows {row}-{r1}, cols {col}-{c1} ({exc}); "
                "the file is truncated or corrupt; re-export or replace it"
            ) from exc
        valid[: r1 - row, : c1 - col] = (masks > 0).all(axis=0)
        return valid

    def row_strips(self, pixels: int = 1 << 20):
        """Yield ``(row, strip)`` over the whole raster, in strips of about ``pixels`` pixels."""
        rows = max(1, pixels // self.info.width)
        for row in range(0, self.info.height, rows):
            yield row, self.read(row, 0, min(rows, self.info.height - row), self.info.width)

    def close(self) -> None:
        if self._dataset is not None:
            self._dataset.close()
            self._dataset = None
        if hasattr(self, "_env"):
            self._env.__exit__(None, None, None)
            del self._env

    def __enter__(self) -> "Raster":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _decode_with_pillow(path: Path, keep_palette_indices: bool) -> np.ndarray:
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode == "P" and not keep_palette_indices:
                img = img.convert("RGB")
            elif img.mode in ("RGBA", "CMYK", "YCbCr", "PA"):
                img = img.convert("RGB")
            elif img.mode in ("LA", "1"):
                img = img.convert("L")
            array = np.asarray(img)
    except UnidentifiedImageError as exc:
        raise DataError(
            f"{path}: not a readable image (unknown or corrupt format); re-export or replace the file"
        ) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(
            f"{path}: cannot decode the image ({exc}); the file is truncated or corrupt; re-export or replace it"
        ) from exc
    return array[..., None] if array.ndim == 2 else array


def check_image_dtype(info: RasterInfo, bands_selected: bool = False) -> None:
    """Raise :class:`DataError` unless the image has a dtype and channel count preprocessing handles
    (any count when ``data.bands`` selects the bands)."""
    if info.dtype not in SUPPORTED_IMAGE_DTYPES:
        raise DataError(
            f"{info.path}: unsupported image dtype {info.dtype}; supported: {', '.join(SUPPORTED_IMAGE_DTYPES)} "
            "(convert complex or integer products to float32 amplitude or intensity first)"
        )
    if info.channels > 3 and not bands_selected:
        raise DataError(
            f"{info.path}: {info.channels} channels; supported: 1 (single-pol), 2 (dual-pol) or 3 (e.g. Pauli RGB); "
            "select the bands to use with data.bands (e.g. {VV: 1, VH: 2}) or before preparing"
        )


def check_label_dtype(info: RasterInfo) -> None:
    """Raise :class:`DataError` unless the label raster has an integer dtype labels can use."""
    if info.dtype not in SUPPORTED_LABEL_DTYPES:
        raise DataError(
            f"{info.path}: unsupported label dtype {info.dtype}; labels must be uint8, uint16, int16 or int32 "
            "(class values) or RGB uint8 (palette colours)"
        )

