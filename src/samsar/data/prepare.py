"""Stage ``prepare``: get raw data into ``data/raw`` and check it early.

- ``synthetic``: simulate the scenes into ``images/<id>.tif`` (float32 intensity) and
  ``labels/<id>.png`` (uint8 class index), and report class frequencies.
- ``fusar_map`` / ``folder`` / ``scene``: copy nothing; list the source files with their sha256.

Either way ``index.json`` lists every pair, and each pair has been checked: both files decode,
sizes match, the image dtype is supported and its values are finite, and every label value is a
known class (or the ignore index). Problems raise :class:`~samsar.data.errors.DataError`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from PIL import Image
from rich.console import Console
from rich.table import Table
from tqdm import tqdm

from samsar.config import Params
from samsar.data.errors import DataError
from samsar.data.labels import LabelDecoder, class_histogram, scan_label
from samsar.data.rasters import Raster, RasterInfo, check_image_dtype, ignore_missing_georeference
from samsar.data.raw_index import INDEX_NAME, RawIndex, RawItem
from samsar.data.sources import list_source
from samsar.data.synthetic import generate_scene
from samsar.io import atomic_path, file_sha256, write_json

FREQUENCIES_NAME = "class_frequencies.json"


def prepare(params: Params) -> Path:
    """Write ``raw_dir`` (atomically, replacing it) and return the path of its ``index.json``."""
    raw_dir = params.raw_dir
    console = Console(stderr=True, soft_wrap=True)
    with atomic_path(raw_dir) as tmp:
        tmp.mkdir()
        index = _generate_synthetic(params, tmp) if params.data.source == "synthetic" else _index_source(params)
        write_json(tmp / INDEX_NAME, index.save(tmp))
        frequencies = class_frequencies(index, params.data.class_names)
        write_json(tmp / FREQUENCIES_NAME, frequencies)
    _print_frequencies(console, frequencies)
    console.print(f"prepare: {len(index.items)} {params.data.source} item(s) listed in {raw_dir / INDEX_NAME}")
    return raw_dir / INDEX_NAME


def class_frequencies(index: RawIndex, class_names: list[str]) -> dict:
    """Pixel counts and fractions per class over all raw items (``ignore`` counted apart)."""
    names = [*class_names, "ignore"]
    counts = {name: sum(item.class_counts.get(name, 0) for item in index.items) for name in names}
    labelled = sum(counts[name] for name in class_names) or 1
    return {"counts": counts, "fractions": {name: counts[name] / labelled for name in class_names}}


def _print_frequencies(console: Console, frequencies: dict) -> None:
    table = Table(title="class frequencies (raw data)")
    table.add_column("class")
    table.add_column("pixels", justify="right")
    table.add_column("share", justify="right")
    for name, n in frequencies["counts"].items():
        share = frequencies["fractions"].get(name)
        table.add_row(name, f"{n:,}", "-" if share is None else f"{share:.1%}")
    console.print(table)


def _generate_synthetic(params: Params, out: Path) -> RawIndex:
    cfg = params.data.synthetic
    names = params.data.class_names
    (out / "images").mkdir()
    (out / "labels").mkdir()
    items = []
    for index in tqdm(range(cfg.n_scenes), desc="simulating scenes", disable=None):
        intensity, label = generate_scene(cfg, index, names)
        item_id = f"scene_{index:03d}"
        image_path, label_path = out / "images" / f"{item_id}.tif", out / "labels" / f"{item_id}.png"
        write_float_tiff(image_path, intensity)
        Image.fromarray(label).save(label_path)
        counts = class_histogram(label, len(names))
        items.append(
            RawItem(
                id=item_id,
                image=image_path,
                label=label_path,
                image_sha256=file_sha256(image_path),
                label_sha256=file_sha256(label_path),
                height=label.shape[0],
                width=label.shape[1],
                channels=1,
                dtype="float32",
                class_counts=dict(zip([*names, "ignore"], (int(n) for n in counts))),
            )
        )
    return RawIndex(source="synthetic", layout="files", encoding="index", items=items)


def write_float_tiff(path: Path, array: np.ndarray) -> None:
    """Write a 2-D float32 array as a single-band tiled GeoTIFF (no georeference)."""
    height, width = array.shape
    profile = {"driver": "GTiff", "height": height, "width": width, "count": 1, "dtype": "float32"}
    if height >= 256 and width >= 256:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    with ignore_missing_georeference(), rasterio.open(path, "w", **profile) as ds:
        ds.write(array.astype(np.float32), 1)


def _index_source(params: Params) -> RawIndex:
    listing = list_source(params)
    decoder = LabelDecoder.from_params(params, listing.encoding)
    items = []
    for pair in tqdm(listing.pairs, desc=f"checking {params.data.source} files", disable=None):
        image = check_image(pair.image)
        counts = scan_label(decoder, pair.label, (image.height, image.width))
        items.append(
            RawItem(
                id=pair.id,
                image=pair.image.resolve(),
                label=pair.label.resolve(),
                image_sha256=file_sha256(pair.image),
                label_sha256=file_sha256(pair.label),
                height=image.height,
                width=image.width,
                channels=image.channels,
                dtype=image.dtype,
                class_counts=counts,
                split=pair.split,
            )
        )
    return RawIndex(source=params.data.source, layout=listing.layout, encoding=listing.encoding, items=items)


def check_image(path: Path) -> RasterInfo:
    """Decode a whole image strip by strip; return its :class:`RasterInfo` if it is usable.

    Raises :class:`DataError` for unreadable or truncated files, unsupported dtypes or channel
    counts, and NaN/Inf values in float data.
    """
    with Raster(path) as raster:
        info = raster.info
        check_image_dtype(info)
        for row, strip in raster.row_strips():
            if info.dtype.startswith("float") and not np.isfinite(strip).all():
                bad = int((~np.isfinite(strip)).sum())
                raise DataError(
                    f"{path}: {bad} NaN/Inf pixel(s) in rows {row}-{row + strip.shape[0]}; "
                    "fill no-data areas (e.g. with 0) or crop them away before preparing"
                )
    return info
