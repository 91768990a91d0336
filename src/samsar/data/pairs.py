"""Reading an image and its label together: raw pixels, their nodata mask, and class indices.

An image pixel is **nodata** when the file says so (its nodata value, its GDAL mask or alpha, for
any used band) or when a used band holds a value listed in ``data.nodata``. NaN is nodata only
where the file's mask or ``data.nodata`` declares it (e.g. nodata = NaN, or ``data.nodata: [nan]``);
a NaN or Inf anywhere else is an error, so a broken float image is never trained on silently.

Labels under image nodata, and label pixels the label file itself marks as nodata, become the
ignore index: they never enter the class counts, the loss or the metrics.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from samsar.data.errors import DataError
from samsar.data.labels import LabelDecoder, class_histogram
from samsar.data.rasters import Raster
from samsar.data.scaling import nodata_valid


class PairReader:
    """An image and its label, opened once; read windows of the image (with validity) and of the classes.

    ``bands``: 0-based indices of the used image bands (``None``: every band). The label must be on
    the image grid (``prepare`` checks it, or reprojects the label).
    """

    def __init__(
        self, image: Path, label: Path, decoder: LabelDecoder, nodata: tuple[float, ...] = (),
        bands: tuple[int, ...] | None = None,
    ) -> None:
        self.image = Raster(image)
        try:
            self.label = decoder.open(label)
        except BaseException:
            self.image.close()
            raise
        self.decoder = decoder
        self.nodata = tuple(nodata)
        self.bands = bands

    def read_image(self, row: int, col: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """Raw ``(h, w, C)`` pixels (every band of the file) and their validity ``(h, w)``;
        False also past the edge. Raises :class:`DataError` for NaN/Inf outside the nodata."""
        raw = self.image.read(row, col, height, width)
        used = raw[..., list(self.bands)] if self.bands is not None else raw
        valid = self.image.read_valid(row, col, height, width, self.bands) & nodata_valid(used, self.nodata)
        if np.issubdtype(used.dtype, np.floating):
            bad = valid & ~np.isfinite(used).all(axis=-1)
            if bad.any():
                rows = np.flatnonzero(bad.any(axis=1))
                raise DataError(
                    f"{self.image.path}: {int(bad.sum())} NaN/Inf pixel(s) outside the nodata mask in rows "
                    f"{row + rows[0]}-{row + rows[-1] + 1}; declare NaN as nodata (the file's nodata value, or "
                    "data.nodata: [nan]), or fill or crop them before preparing"
                )
        return raw, valid

    def read_classes(self, row: int, col: int, height: int, width: int, image_valid: np.ndarray) -> np.ndarray:
        """``(h, w)`` uint8 class indices; ignore index where ``image_valid`` or the label's own mask is False."""
        stored = self.label.read(row, col, height, width)
        valid = image_valid & self.label.read_valid(row, col, height, width)
        return self.decoder.decode(stored, self.label.path, valid)

    def close(self) -> None:
        # Each Raster holds a GDAL environment: close in the reverse order of opening.
        self.label.close()
        self.image.close()

    def __enter__(self) -> "PairReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def scan_pair(reader: PairReader, pixels: int = 1 << 20) -> tuple[dict[str, int], int]:
    """Class pixel counts (plus ``ignore``) of a whole pair, read strip by strip, and its image nodata pixel count.

    Checks every image pixel (NaN/Inf rule) and every label value: under the ``error`` policy the
    unknown values of the whole file are listed, each with its pixel count.
    """
    decoder, info = reader.decoder, reader.image.info
    num_classes = len(decoder.class_names)
    totals = np.zeros(num_classes + 1, dtype=np.int64)
    unknown: Counter = Counter()
    nodata = 0
    rows = max(1, pixels // info.width)
    for row in range(0, info.height, rows):
        n = min(rows, info.height - row)
        _, valid = reader.read_image(row, 0, n, info.width)
        stored = reader.label.read(row, 0, n, info.width)
        labelled = valid & reader.label.read_valid(row, 0, n, info.width)
        classes = np.where(labelled, decoder._lookup(stored, reader.label.path), decoder.ignore_index)
        unknown.update(decoder.unknown_counts(stored, classes < 0))
        totals += class_histogram(classes, num_classes)
        nodata += int((~valid).sum())
    if unknown and decoder.unknown == "error":
        raise decoder.unknown_error(reader.label.path, unknown)
    return dict(zip([*decoder.class_names, "ignore"], (int(n) for n in totals))), nodata
