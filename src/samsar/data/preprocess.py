"""Stage ``preprocess``: SAR scaling, tiling, splits and the manifest, into ``data/processed``.

Reads the raw items through ``data/raw/index.json``. The scaler is fitted on training tiles only
(bounded sample), then every tile is read window by window, scaled and written as
``images/<tile_id>.npy`` (float32 ``(3, T, T)``) and ``labels/<tile_id>.png`` (uint8). The whole
output folder is built in a temporary folder and renamed into place at the end, so a failure
leaves the previous output untouched and nothing half-written.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from rich.console import Console
from tqdm import tqdm

from samsar.config import Params
from samsar.data.errors import DataError
from samsar.data.labels import LabelDecoder, class_histogram
from samsar.data.rasters import Raster, check_image_dtype
from samsar.data.raw_index import INDEX_NAME, RawIndex, RawItem
from samsar.data.scaling import SarScaler
from samsar.data.splits import SPLITS
from samsar.data.tiling import TileSpec, plan_tiles
from samsar.io import atomic_path, write_json

MANIFEST_NAME = "manifest.parquet"
DATASET_NAME = "dataset.json"
# Pixels kept for the percentile fit, whatever the amount of training data.
SCALER_SAMPLE = 1_000_000


def preprocess(params: Params) -> Path:
    """Build ``processed_dir`` from the raw index; return the manifest path."""
    console = Console(stderr=True, soft_wrap=True)
    index = RawIndex.load(params.raw_dir)
    decoder = LabelDecoder.from_params(params, index.encoding)
    plan = plan_tiles(params, index, decoder)
    scaler = SarScaler(params.preprocess.input_kind, params.preprocess.to_db, tuple(params.preprocess.clip_percentiles))
    train_tiles = [t for t in plan.tiles if t.split == "train"]
    if not train_tiles:
        raise DataError(
            f"{params.raw_dir / INDEX_NAME}: no tile fits in the training split; "
            "lower preprocess.tile_size or preprocess.split.block_size, or add data"
        )
    scaler = scaler.fit(_read_images(train_tiles), max_samples=SCALER_SAMPLE, seed=params.seed)

    out_dir = params.processed_dir
    with atomic_path(out_dir) as tmp:
        (tmp / "images").mkdir(parents=True)
        (tmp / "labels").mkdir()
        rows, empty = _write_tiles(tmp, plan.tiles, scaler, decoder, params)
        manifest = pd.DataFrame(rows, columns=manifest_columns(params.data.class_names))
        manifest.to_parquet(tmp / MANIFEST_NAME, index=False)
        notes = plan.notes + ([f"{empty} tile(s) with no labelled pixel skipped"] if empty else [])
        write_json(tmp / DATASET_NAME, dataset_document(params, index, scaler, manifest, notes))
    for note in notes:
        console.print(f"note: {note}")
    counts = manifest["split"].value_counts().to_dict()
    console.print(
        f"preprocess: {len(manifest)} tiles ({', '.join(f'{s} {counts.get(s, 0)}' for s in SPLITS)}) in {out_dir}"
    )
    return out_dir / MANIFEST_NAME


def manifest_columns(class_names: list[str]) -> list[str]:
    """Manifest column order."""
    return [
        "tile_id", "split", "image_path", "label_path", "source_file", "row_off", "col_off", "height", "width",
        *[f"count_{name}" for name in class_names], "count_ignore", "mean", "std", "sha256",
    ]  # fmt: skip


def dataset_document(
    params: Params, index: RawIndex, scaler: SarScaler, manifest: pd.DataFrame, notes: list[str]
) -> dict:
    """Content of ``dataset.json``: what training and inference need to read the tiles."""
    data = params.data
    return {
        "source": index.source,
        "classes": [{"name": c.name, "color": list(c.color)} for c in data.classes],
        "ignore_index": data.ignore_index,
        "background": data.background,
        "tile_size": params.preprocess.tile_size,
        "stride": params.preprocess.stride,
        "scaling": scaler.to_dict(),
        "n_tiles": {s: int((manifest["split"] == s).sum()) for s in SPLITS},
        "notes": notes,
    }


def _by_item(tiles: list[TileSpec]) -> list[tuple[RawItem, list[TileSpec]]]:
    """Tiles grouped by raw item, in order of first appearance."""
    groups: dict[str, list[TileSpec]] = defaultdict(list)
    for spec in tiles:
        groups[spec.item.id].append(spec)
    return [(specs[0].item, specs) for specs in groups.values()]


def _read_images(tiles: list[TileSpec]) -> Iterator[np.ndarray]:
    """Raw image window of each tile (unpadded), opening each source file once."""
    for item, specs in _by_item(tiles):
        with Raster(item.image) as raster:
            check_image_dtype(raster.info)
            for spec in specs:
                yield raster.read(spec.row, spec.col, spec.height, spec.width)


def _write_tiles(
    out: Path, tiles: list[TileSpec], scaler: SarScaler, decoder: LabelDecoder, params: Params
) -> tuple[list[dict], int]:
    """Write every tile's image and label; return the manifest rows and the number of all-ignore tiles skipped."""
    size, ignore = params.preprocess.tile_size, params.data.ignore_index
    num_classes = len(decoder.class_names)
    rows, empty = [], 0
    progress = tqdm(total=len(tiles), desc="writing tiles", disable=None)
    for item, specs in _by_item(tiles):
        with Raster(item.image) as image_raster, decoder.open(item.label) as label_raster:
            check_image_dtype(image_raster.info)
            for spec in specs:
                progress.update()
                label = np.full((size, size), ignore, dtype=np.uint8)
                stored = label_raster.read(spec.row, spec.col, spec.height, spec.width)
                label[: spec.height, : spec.width] = decoder.decode(stored, item.label)
                counts = class_histogram(label, num_classes)
                if counts[:-1].sum() == 0:
                    empty += 1
                    continue
                image = np.zeros((3, size, size), dtype=np.float32)
                raw = image_raster.read(spec.row, spec.col, spec.height, spec.width)
                image[:, : spec.height, : spec.width] = scaler.transform(raw)
                rows.append(_write_tile(out, spec, image, label, counts, decoder.class_names))
    progress.close()
    return rows, empty


def _write_tile(
    out: Path, spec: TileSpec, image: np.ndarray, label: np.ndarray, counts: np.ndarray, class_names
) -> dict:
    """Save one tile's files; return its manifest row."""
    image_rel, label_rel = Path("images") / f"{spec.tile_id}.npy", Path("labels") / f"{spec.tile_id}.png"
    np.save(out / image_rel, image)
    Image.fromarray(label).save(out / label_rel)
    return {
        "tile_id": spec.tile_id,
        "split": spec.split,
        "image_path": image_rel.as_posix(),
        "label_path": label_rel.as_posix(),
        "source_file": str(spec.item.image),
        "row_off": spec.row,
        "col_off": spec.col,
        "height": spec.height,
        "width": spec.width,
        **{f"count_{name}": int(n) for name, n in zip(class_names, counts[:-1])},
        "count_ignore": int(counts[-1]),
        "mean": float(image.mean()),
        "std": float(image.std()),
        "sha256": tile_hash(image, label),
    }


def tile_hash(image: np.ndarray, label: np.ndarray) -> str:
    """sha256 of a tile's image bytes followed by its label bytes."""
    return hashlib.sha256(np.ascontiguousarray(image).tobytes() + np.ascontiguousarray(label).tobytes()).hexdigest()
