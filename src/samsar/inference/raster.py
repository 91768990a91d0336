"""Windowed raster reading and writing for scene prediction (GeoTIFF, TIFF, PNG, BMP in; Cloud-Optimized GeoTIFF out).

Scenes are read in blocks and written in bands of rows, so memory does not grow with the scene.
"""

from __future__ import annotations

import errno
import json
from pathlib import Path
from types import TracebackType

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio._err import CPLE_BaseError  # GDAL errors rasterio passes on unwrapped (e.g. from a copy)
from rasterio.errors import CRSError, RasterioError
from rasterio.windows import Window

from samsar.data.rasters import ignore_missing_georeference
from samsar.inference.errors import PredictError

# GDAL's block cache defaults to a share of RAM and would otherwise keep every block of a
# large scene once read; prediction reads each block row about twice in a row (strips overlap),
# so a cache of about one block row suffices.
GDAL_CACHE_MB = 16
TILE = 256


def gdal_env() -> rasterio.Env:
    """GDAL settings for streaming a scene: bounded block cache."""
    return rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB)


class SceneReader:
    """A raster scene opened for reading blocks: ``(raw, valid)`` per block, plus its georeference."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise PredictError(f"{self.path}: input scene not found; pass an existing GeoTIFF, TIFF, PNG or BMP file")
        try:
            with ignore_missing_georeference():
                self._ds = rasterio.open(self.path)
        except RasterioError as exc:
            raise PredictError(
                f"{self.path}: cannot be read as a raster image ({exc}); pass a GeoTIFF, TIFF, PNG or BMP scene"
            ) from exc
        self.height, self.width, self.count = self._ds.height, self._ds.width, self._ds.count
        self.crs = self._ds.crs
        transform = self._ds.transform
        self.georeferenced = self.crs is not None or transform != Affine.identity()
        self.transform = transform if self.georeferenced else None
        # 0-based bands the model uses (the scaler's data.bands; () = all): a pixel is nodata when
        # any of them is masked or not finite, as in preprocess.
        self.used_bands: tuple[int, ...] = ()

    def read_block(self, row0: int, row1: int, col0: int, col1: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows ``[row0, row1)`` x columns ``[col0, col1)``: raw pixels ``(h, w)`` or ``(h, w, C)`` in the
        file's dtype, and a validity mask ``(h, w)`` (False where the file's nodata/mask of a used band
        says so or a used value is not finite)."""
        window = Window(col0, row0, col1 - col0, row1 - row0)
        used = [b + 1 for b in self.used_bands] or list(range(1, self.count + 1))
        try:
            with ignore_missing_georeference():
                bands = self._ds.read(window=window)
                valid = (self._ds.read_masks(used, window=window) > 0).all(axis=0)
        except RasterioError as exc:
            raise PredictError(
                f"{self.path}: read failed at rows {row0}-{row1}, columns {col0}-{col1} ({exc}); the file may be truncated"
            ) from exc
        if np.issubdtype(bands.dtype, np.floating):
            valid &= np.isfinite(bands[[b - 1 for b in used]]).all(axis=0)
        raw = bands[0] if self.count == 1 else np.moveaxis(bands, 0, -1)
        return raw, valid

    def pixel_area_km2(self) -> float | None:
        """Ground area of one pixel in km2, or None unless the scene has a projected CRS with a linear unit."""
        if self.crs is None or self.transform is None or not self.crs.is_projected:
            return None
        try:
            _, metres_per_unit = self.crs.linear_units_factor
        except CRSError:
            return None
        t = self.transform
        return abs(t.a * t.e - t.b * t.d) * metres_per_unit**2 / 1e6

    def close(self) -> None:
        self._ds.close()

    def __enter__(self) -> "SceneReader":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


class RowWriter:
    """A single-band Cloud-Optimized GeoTIFF written top to bottom.

    Rows arrive in bands of any height; they are copied into a buffer one tile high and
    written in whole tile rows into a tiled, compressed staging GeoTIFF beside ``path``, so each
    tile is written exactly once and memory stays one tile row whatever the scene size. On a
    clean close GDAL's COG driver copies the staging file to ``path`` in COG layout (overviews
    down to one tile, resampled with ``resampling``: ``mode`` for a class map, i.e. when a colour
    table or class names are given, else ``average``; the same tiles and compression) and the
    staging file is removed. Nodata, CRS, colour table, band description and tags carry over;
    ``class_names`` are stored as the dataset tag ``CLASS_NAMES`` (a JSON list) and the band tags
    ``CLASS_<value>`` (both shown by ``gdalinfo``), the band description being ``class``; ``tags``
    are further dataset tags (e.g. the minimum mapping unit).
    """

    def __init__(
        self,
        path: Path,
        *,
        height: int,
        width: int,
        dtype: str,
        nodata: float | None,
        crs: rasterio.crs.CRS | None,
        transform: Affine | None,
        colormap: dict[int, tuple[int, int, int, int]] | None = None,
        class_names: list[str] | None = None,
        description: str | None = None,
        resampling: str | None = None,
        tags: dict[str, str] | None = None,
    ) -> None:
        profile = dict(
            driver="GTiff", height=height, width=width, count=1, dtype=dtype, nodata=nodata,
            tiled=True, blockxsize=TILE, blockysize=TILE, BIGTIFF="IF_SAFER",
            compress="deflate", ZLEVEL=1,  # staging only: fast; the COG copy compresses fully
        )
        if crs is not None:
            profile["crs"] = crs
        if transform is not None:
            profile["transform"] = transform
        categorical = colormap is not None or class_names is not None
        self.resampling = (resampling or ("mode" if categorical else "average")).upper()
        self._path = Path(path)
        self._staging = self._path.with_name(f".{self._path.name}.rows.tif")
        with ignore_missing_georeference():
            self._ds = rasterio.open(self._staging, "w", **profile)
        if colormap is not None:
            self._ds.write_colormap(1, colormap)
        if class_names is not None:
            self._ds.update_tags(CLASS_NAMES=json.dumps(list(class_names)))
            self._ds.update_tags(1, **{f"CLASS_{i}": name for i, name in enumerate(class_names)})
        if tags:
            self._ds.update_tags(**tags)
        if description or class_names is not None:
            self._ds.set_band_description(1, description or "class")
        self._buffer = np.empty((min(TILE, height), width), dtype=dtype)
        self._buffered = 0  # rows in the buffer
        self._written = 0  # rows already in the file

    def write(self, rows: np.ndarray) -> None:
        """Append the next band of rows ``(n, W)``."""
        while len(rows):
            take = min(len(rows), len(self._buffer) - self._buffered)
            self._buffer[self._buffered : self._buffered + take] = rows[:take]
            self._buffered += take
            rows = rows[take:]
            if self._buffered == len(self._buffer) or self._written + self._buffered == self._ds.height:
                self._flush()

    def _flush(self) -> None:
        n, width = self._buffered, self._buffer.shape[1]
        self._ds.write(self._buffer[:n], 1, window=Window(0, self._written, width, n))
        self._written += n
        self._buffered = 0

    def close(self) -> None:
        """Finish the staging file and copy it into COG layout at ``path`` (see the class doc)."""
        if self._ds.closed:
            return
        try:
            self._ds.close()
            with ignore_missing_georeference():
                rasterio.shutil.copy(
                    self._staging, self._path, driver="COG", COMPRESS="DEFLATE", BLOCKSIZE=TILE,
                    OVERVIEW_RESAMPLING=self.resampling, BIGTIFF="IF_SAFER", NUM_THREADS="ALL_CPUS",
                )
        except (RasterioError, CPLE_BaseError) as exc:
            raise self._incomplete() from exc
        finally:
            self._staging.unlink(missing_ok=True)

    def abort(self) -> None:
        """Close without writing ``path`` (after a failure); the staging file is removed."""
        try:
            if not self._ds.closed:
                self._ds.close()
        except (RasterioError, CPLE_BaseError):
            pass  # the write already failed; its error is the one to report
        finally:
            self._staging.unlink(missing_ok=True)

    def verify(self) -> None:
        """Read the closed file back, tile row by tile row. GDAL reports a failed write (a full
        disk, an I/O error) only as a message while flushing, so a file it could not finish would
        otherwise pass as written."""
        try:
            with ignore_missing_georeference(), rasterio.open(self._path) as ds:
                for row in range(0, ds.height, TILE):
                    ds.read(1, window=Window(0, row, ds.width, min(TILE, ds.height - row)))
        except (RasterioError, CPLE_BaseError) as exc:
            raise self._incomplete() from exc

    def _incomplete(self) -> OSError:
        return OSError(errno.EIO, "written incompletely (disk full or I/O error); free some space or write elsewhere",
                       str(self._path))

    def __enter__(self) -> "RowWriter":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc_type is not None:
            self.abort()
            return
        self.close()
        self.verify()
