"""Stage ``preprocess``: SAR scaling, tiling, splits and the manifest, into ``data/processed``.

Reads the raw items through ``data/raw/index.json``. The scaler is fitted on the valid pixels of
training tiles only (bounded sample; nodata left out), then every tile is read window by window,
scaled and written as ``images/<tile_id>.npy`` (float32 ``(3, T, T)``, 0 at nodata) and
``labels/<tile_id>.png`` (uint8, ignore index at nodata). Tiles with more than
``preprocess.max_nodata_fraction`` nodata pixels, or without a labelled pixel, are skipped. The whole
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

from samsar.config import Params, band_names
from samsar.data.bands import parse_channel
from samsar.data.errors import DataError
from samsar.data.labels import LabelDecoder, class_histogram
from samsar.data.pairs import PairReader
from samsar.data.rasters import check_image_dtype
from samsar.data.raw_index import INDEX_NAME, RawIndex, RawItem
from samsar.data.scaling import SarScaler
from samsar.data.splits import SPLITS
from samsar.data.tiling import TileSpec, plan_tiles
from samsar.io import atomic_path, write_json
from samsar.progress import Progress

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
    scaler = make_scaler(params, index)
    train_tiles = [t for t in plan.tiles if t.split == "train"]
    if not train_tiles:
        raise DataError(
            f"{params.raw_dir / INDEX_NAME}: no tile fits in the training split; "
            "lower preprocess.tile_size or preprocess.split.block_size, or add data"
        )
    try:
        scaler = scaler.fit(_read_images(train_tiles, decoder, params), max_samples=SCALER_SAMPLE, seed=params.seed)
    except ValueError as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{params.raw_dir / INDEX_NAME}: the training tiles give no pixel to fit the scaling on ({exc}); "
                        "check data.nodata and the files' nodata values") from exc

    out_dir = params.processed_dir
    with atomic_path(out_dir) as tmp:
        (tmp / "images").mkdir(parents=True)
        (tmp / "labels").mkdir()
        rows, skipped = _write_tiles(tmp, plan.tiles, scaler, decoder, params)
        manifest = pd.DataFrame(rows, columns=manifest_columns(params.data.class_names))
        manifest["source_file"] = [source_name(params, Path(s)) for s in manifest["source_file"]]
        manifest.to_parquet(tmp / MANIFEST_NAME, index=False)
        notes = plan.notes + _skip_notes(skipped, params.preprocess.max_nodata_fraction)
        write_json(tmp / DATASET_NAME, dataset_document(params, index, scaler, manifest, notes, skipped))
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


def source_name(params: Params, path: Path) -> str:
    """How the manifest names a tile's source file: relative to the project (params.yaml's folder),
    else to ``data.inputs``, so the same data in another checkout or on a worker reads the same."""
    path = path.resolve()
    bases = [params.root] + ([params.path(params.data.inputs)] if params.data.inputs is not None else [])
    for base in bases:
        base = base.resolve()
        if base.is_dir() and path.is_relative_to(base):
            return path.relative_to(base).as_posix()
    return path.as_posix()


def make_scaler(params: Params, index: RawIndex) -> SarScaler:
    """The unfitted scaler for the raw items: units, band choice and composition from params.

    Without ``data.bands`` and ``preprocess.compose`` it is the legacy scaler (every band, the
    1/2/3-channel rule), so datasets prepared before band selection existed scale as before.
    """
    pre, data = params.preprocess, params.data
    scaler = SarScaler(pre.input_kind, pre.to_db, tuple(pre.clip_percentiles), nodata=tuple(data.nodata))
    if data.bands is None and pre.compose is None or not index.items:
        return scaler
    first = index.items[0]
    bands = first.bands if first.bands is not None else tuple(range(first.channels))
    names = band_names(data.bands, first.channels)
    for expr in pre.compose or ():
        missing = [name for name in parse_channel(expr).bands if name not in names]
        if missing:
            raise DataError(f"{first.image}: preprocess.compose '{expr}' uses {missing} but the images give bands {names}; "
                            "fix preprocess.compose or data.bands")
    return scaler._with(
        bands=tuple(bands), band_names=tuple(names), file_bands=first.channels,
        compose=tuple(pre.compose or ()),
    )


def _skip_notes(skipped: dict[str, int], max_nodata: float) -> list[str]:
    notes = []
    if skipped["nodata"]:
        notes.append(f"{skipped['nodata']} tile(s) with more than {max_nodata:.0%} nodata pixels skipped "
                     "(preprocess.max_nodata_fraction)")
    if skipped["empty"]:
        notes.append(f"{skipped['empty']} tile(s) with no labelled pixel skipped")
    return notes


def dataset_document(
    params: Params, index: RawIndex, scaler: SarScaler, manifest: pd.DataFrame, notes: list[str],
    skipped: dict[str, int] | None = None,
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
        # Nodata: configured values, pixels in the raw images, in the written tiles (their labels are
        # ignore_index) and tiles skipped for too much of it.
        "nodata": {
            "values": scaler.to_dict()["nodata"],
            "raw_pixels": int(sum(item.nodata_pixels for item in index.items)),
            "tile_pixels": int((skipped or {}).get("nodata_pixels", 0)),
            "tiles_skipped": int((skipped or {}).get("nodata", 0)),
            "max_fraction": params.preprocess.max_nodata_fraction,
        },
        "notes": notes,
    }


def _by_item(tiles: list[TileSpec]) -> list[tuple[RawItem, list[TileSpec]]]:
    """Tiles grouped by raw item, in order of first appearance."""
    groups: dict[str, list[TileSpec]] = defaultdict(list)
    for spec in tiles:
        groups[spec.item.id].append(spec)
    return [(specs[0].item, specs) for specs in groups.values()]


def _read_images(tiles: list[TileSpec], decoder: LabelDecoder, params: Params) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Raw image window of each tile (unpadded) and its validity, opening each source file once;
    tiles that will be skipped for their nodata share are left out."""
    max_nodata = params.preprocess.max_nodata_fraction
    for item, specs in _by_item(tiles):
        with PairReader(item.image, item.label, decoder, tuple(params.data.nodata), item.bands) as pair:
            check_image_dtype(pair.image.info, bands_selected=item.bands is not None)
            for spec in specs:
                raw, valid = pair.read_image(spec.row, spec.col, spec.height, spec.width)
                if 1.0 - valid.mean() <= max_nodata:
                    yield raw, valid


def _write_tiles(
    out: Path, tiles: list[TileSpec], scaler: SarScaler, decoder: LabelDecoder, params: Params
) -> tuple[list[dict], dict[str, int]]:
    """Write every tile's image and label; return the manifest rows and the skip counts
    (``nodata``: mostly nodata, ``empty``: no labelled pixel) and nodata pixels kept (``nodata_pixels``)."""
    size, ignore = params.preprocess.tile_size, params.data.ignore_index
    max_nodata = params.preprocess.max_nodata_fraction
    num_classes = len(decoder.class_names)
    rows, skipped = [], {"nodata": 0, "empty": 0, "nodata_pixels": 0}
    progress = Progress(len(tiles), "writing tiles", unit="tile")
    for item, specs in _by_item(tiles):
        with PairReader(item.image, item.label, decoder, tuple(params.data.nodata), item.bands) as pair:
            check_image_dtype(pair.image.info, bands_selected=item.bands is not None)
            for spec in specs:
                progress.update()
                raw, valid = pair.read_image(spec.row, spec.col, spec.height, spec.width)
                if 1.0 - valid.mean() > max_nodata:
                    skipped["nodata"] += 1
                    continue
                label = np.full((size, size), ignore, dtype=np.uint8)
                label[: spec.height, : spec.width] = pair.read_classes(spec.row, spec.col, spec.height, spec.width, valid)
                counts = class_histogram(label, num_classes)
                if counts[:-1].sum() == 0:
                    skipped["empty"] += 1
                    continue
                image = np.zeros((3, size, size), dtype=np.float32)
                with np.errstate(all="ignore"):  # nodata values (e.g. -9999) may hit logs; they are zeroed next
                    image[:, : spec.height, : spec.width] = scaler.transform(raw) * valid
                skipped["nodata_pixels"] += int((~valid).sum())
                rows.append(_write_tile(out, spec, image, label, counts, decoder.class_names))
    progress.close()
    return rows, skipped


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
