"""Turning stored label rasters (index values or palette colours) into class indices.

A value or colour that is not in the class set is never silently class 0: it is an error naming
the file, the value and its pixel count, or, with ``data.unknown_labels: ignore``, the ignore index.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from samsar.config import Params
from samsar.data.errors import DataError
from samsar.data.rasters import Raster, check_label_dtype

Encoding = Literal["index", "rgb"]


@dataclass(frozen=True)
class LabelDecoder:
    """Maps stored label values to class indices ``0..K-1`` or ``ignore_index``.

    ``index`` encoding (uint8, uint16, int16 or int32 values): class = value - ``value_offset``;
    ``ignore_values`` (negative ones too) and ``ignore_index`` itself mean "unlabelled". ``rgb``
    encoding: the colour of each class in ``colors``.
    """

    class_names: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]
    ignore_index: int
    encoding: Encoding
    unknown: Literal["error", "ignore"] = "error"
    value_offset: int = 0
    ignore_values: tuple[int, ...] = ()
    _table: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.encoding == "index":
            table = np.asarray(self.ignore_values, dtype=np.int64)  # values that mean "unlabelled"
        else:
            codes = np.array([(r << 16) | (g << 8) | b for r, g, b in self.colors], dtype=np.int64)
            order = np.argsort(codes)
            table = np.stack([codes[order], order])  # sorted colour codes and their class index
        object.__setattr__(self, "_table", table)

    @classmethod
    def from_params(cls, params: Params, encoding: Encoding) -> "LabelDecoder":
        """The decoder for the configured classes, source and unknown-label policy."""
        data = params.data
        return cls(
            class_names=tuple(data.class_names),
            colors=tuple(tuple(c.color) for c in data.classes),
            ignore_index=data.ignore_index,
            encoding=encoding,
            unknown=data.unknown_labels,
            value_offset=data.label_offset,
            ignore_values=tuple(data.ignore_values),
        )

    def open(self, path: Path) -> Raster:
        """Open a label raster the way this encoding reads it (palette PNGs keep their indices for ``index``)."""
        raster = Raster(path, keep_palette_indices=self.encoding == "index")
        check_label_dtype(raster.info)
        return raster

    def decode(self, raw: np.ndarray, path: Path, valid: np.ndarray | None = None) -> np.ndarray:
        """``(H, W)`` uint8 class indices for a stored label window ``(H, W, C)``; pixels where
        ``valid`` is False (image or label nodata) become ``ignore_index`` whatever their value."""
        classes = self._lookup(raw, path)
        if valid is not None:
            classes = np.where(valid, classes, self.ignore_index)
        unknown = classes < 0
        if unknown.any():
            if self.unknown == "error":
                raise self.unknown_error(path, self.unknown_counts(raw, unknown))
            classes = np.where(unknown, self.ignore_index, classes)
        return classes.astype(np.uint8)

    def unknown_counts(self, raw: np.ndarray, unknown: np.ndarray | None = None) -> Counter:
        """Pixel count per stored value (int or RGB tuple) that is not in the class set."""
        if unknown is None:
            unknown = self._lookup(raw, None) < 0
        if not unknown.any():
            return Counter()
        values = raw[unknown]
        if self.encoding == "rgb":
            found, counts = np.unique(values.reshape(-1, values.shape[-1]), axis=0, return_counts=True)
            return Counter({tuple(int(v) for v in f): int(n) for f, n in zip(found, counts)})
        found, counts = np.unique(values, return_counts=True)
        return Counter({int(f): int(n) for f, n in zip(found, counts)})

    def unknown_error(self, path: Path, counts: Counter) -> DataError:
        """The error for label values outside the class set, with each value and its pixel count."""
        listed = ", ".join(f"{value} ({n} px)" for value, n in counts.most_common(8))
        more = f" and {len(counts) - 8} more" if len(counts) > 8 else ""
        kind = "colour(s)" if self.encoding == "rgb" else "value(s)"
        return DataError(
            f"{path}: label {kind} not in data.classes: {listed}{more}; "
            f"add the class to data.classes, fix the mask, or set data.unknown_labels: ignore "
            f"to map them to ignore_index {self.ignore_index}"
        )

    def _lookup(self, raw: np.ndarray, path: Path | None) -> np.ndarray:
        if self.encoding == "rgb":
            if raw.shape[-1] < 3:
                raise DataError(f"{path}: single-band mask but the mask mode is rgb; set data.folder.mask_mode: index")
            rgb = raw[..., :3].astype(np.int64)
            codes = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
            sorted_codes, classes = self._table
            pos = np.clip(np.searchsorted(sorted_codes, codes), 0, len(sorted_codes) - 1)
            return np.where(sorted_codes[pos] == codes, classes[pos], -1)
        if raw.shape[-1] > 1 and not (raw == raw[..., :1]).all():
            raise DataError(
                f"{path}: mask has {raw.shape[-1]} differing bands but the mask mode is index; set data.folder.mask_mode: rgb"
            )
        values = raw[..., 0].astype(np.int64)
        offset = values - self.value_offset
        classes = np.where((offset >= 0) & (offset < len(self.class_names)), offset, -1)
        classes = np.where((values == self.ignore_index) & (classes < 0), self.ignore_index, classes)
        if self._table.size:
            classes = np.where(np.isin(values, self._table), self.ignore_index, classes)
        return classes


def scan_label(decoder: LabelDecoder, path: Path, shape: tuple[int, int]) -> dict[str, int]:
    """Pixel count per class (and ``ignore``) of a whole label file, read strip by strip.

    Raises :class:`DataError` when the label's size differs from ``shape`` or, under the
    ``error`` policy, listing every unknown value of the file with its total pixel count.
    """
    totals = np.zeros(len(decoder.class_names) + 1, dtype=np.int64)
    unknown: Counter = Counter()
    with decoder.open(path) as raster:
        if (raster.info.height, raster.info.width) != shape:
            raise DataError(
                f"{path}: label is {raster.info.height}x{raster.info.width} but its image is "
                f"{shape[0]}x{shape[1]}; image and label must cover the same pixels"
            )
        for row, strip in raster.row_strips():
            valid = raster.read_valid(row, 0, strip.shape[0], strip.shape[1])
            classes = np.where(valid, decoder._lookup(strip, path), decoder.ignore_index)
            unknown.update(decoder.unknown_counts(strip, classes < 0))
            totals += class_histogram(classes, len(decoder.class_names))
    if unknown and decoder.unknown == "error":
        raise decoder.unknown_error(path, unknown)
    return dict(zip([*decoder.class_names, "ignore"], (int(n) for n in totals)))


def class_histogram(classes: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts of classes ``0..K-1`` followed by the count of everything else (the ignore index and any other value)."""
    counts = np.bincount(classes[(classes >= 0) & (classes < num_classes)].ravel(), minlength=num_classes)
    return np.append(counts, classes.size - counts.sum())
