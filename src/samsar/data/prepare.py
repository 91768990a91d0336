"""Stage ``prepare``: get raw data into ``data/raw`` and check it early.

- ``synthetic``: simulate the scenes into ``images/<id>.tif`` (float32 intensity) and
  ``labels/<id>.png`` (uint8 class index), and report class frequencies.
- ``fusar_map`` / ``folder`` / ``scene``: copy nothing; list the source files with their sha256.
  A georeferenced label on another grid than its image is written to ``labels/<id>.tif``
  reprojected onto the image grid when ``data.label_grid: reproject`` allows it.

Either way ``index.json`` lists every pair, and each pair has been checked: both files decode,
grids (CRS, transform, size) match, the image dtype and bands are supported, its values are
finite outside the nodata (see :mod:`samsar.data.pairs`), and every label value is a known class
(or ignored). Problems raise :class:`~samsar.data.errors.DataError`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from PIL import Image
from rich.console import Console
from rich.table import Table

from samsar.config import Params
from samsar.data.errors import DataError
from samsar.data.bands import resolve_bands
from samsar.data.grids import check_pair_grid, reproject_label
from samsar.data.labels import LabelDecoder, class_histogram
from samsar.data.pairs import PairReader, scan_pair
from samsar.data.rasters import Raster, check_image_dtype, ignore_missing_georeference
from samsar.data.raw_index import INDEX_NAME, RawIndex, RawItem
from samsar.data.sources import RawPair, list_source
from samsar.data.synthetic import generate_scene
from samsar.io import atomic_path, file_sha256, write_json
from samsar.progress import Progress

FREQUENCIES_NAME = "class_frequencies.json"


def prepare(params: Params) -> Path:
    """Write ``raw_dir`` (atomically, replacing it) and return the path of its ``index.json``."""
    raw_dir = params.raw_dir
    console = Console(stderr=True, soft_wrap=True)
    with atomic_path(raw_dir) as tmp:
        tmp.mkdir()
        index = _generate_synthetic(params, tmp) if params.data.source == "synthetic" else _index_source(params, tmp)
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
    for index in Progress(cfg.n_scenes, "simulating scenes", unit="scene").iterate(range(cfg.n_scenes)):
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


def _index_source(params: Params, out: Path) -> RawIndex:
    listing = list_source(params)
    decoder = LabelDecoder.from_params(params, listing.encoding)
    items = [
        check_pair(params, pair, decoder, out)
        for pair in Progress(len(listing.pairs), f"checking {params.data.source} files", unit="pair").iterate(listing.pairs)
    ]
    _check_same_bands(items)
    return RawIndex(source=params.data.source, layout=listing.layout, encoding=listing.encoding, items=items)


def check_pair(params: Params, pair: RawPair, decoder: LabelDecoder, out: Path) -> RawItem:
    """Check one image/label pair end to end and describe it; a label on another grid is
    reprojected into ``out/labels`` when ``data.label_grid`` allows it."""
    data = params.data
    with Raster(pair.image) as raster:
        image = raster.info
    check_image_dtype(image, bands_selected=data.bands is not None)
    bands = resolve_bands(data.bands, image.descriptions, image.channels, pair.image) if data.bands is not None else None
    with decoder.open(pair.label) as raster:
        label_info = raster.info
    label = pair.label.resolve()
    if check_pair_grid(image, label_info, data.label_grid):
        (out / "labels").mkdir(exist_ok=True)
        label = reproject_label(label_info, image, out / "labels" / f"{pair.id}.tif")
    with PairReader(pair.image, label, decoder, tuple(data.nodata), bands) as reader:
        counts, nodata = scan_pair(reader)
    return RawItem(
        id=pair.id,
        image=pair.image.resolve(),
        label=label,
        image_sha256=file_sha256(pair.image),
        label_sha256=file_sha256(label),
        height=image.height,
        width=image.width,
        channels=image.channels,
        dtype=image.dtype,
        class_counts=counts,
        split=pair.split,
        bands=bands,
        nodata_pixels=nodata,
        label_source=None if label == pair.label.resolve() else str(pair.label.resolve()),
    )


def _check_same_bands(items: list[RawItem]) -> None:
    """Every image must give the model the same bands in the same order (one scaler serves them all)."""
    first = items[0] if items else None
    for item in items[1:]:
        if (item.channels, item.bands) != (first.channels, first.bands):
            raise DataError(
                f"{item.image}: {item.channels} band(s), using {_bands_text(item)}, but {first.image} has "
                f"{first.channels}, using {_bands_text(first)}; every image of a dataset must have the same bands "
                "in the same order (select them with data.bands)"
            )


def _bands_text(item: RawItem) -> str:
    return "every band" if item.bands is None else "bands " + ", ".join(str(b + 1) for b in item.bands)
