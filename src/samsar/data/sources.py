"""Finding the image/label pairs of each external data source (FUSAR-Map, folder, scene).

Images and labels are paired by file name, never by sorted order. Name keys tolerate the usual
suffixes, so ``xxx_SAR.tif`` pairs with ``xxx_Lab.tif`` and ``xxx.jpg`` with ``xxx.png``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from samsar.config import Params
from samsar.data.errors import DataError
from samsar.data.labels import Encoding
from samsar.data.rasters import RASTER_SUFFIXES

# FUSAR-Map label palettes (RGB -> class name). Raw 2.0 labels also hold (178, 34, 34), which is
# deliberately absent: it must be reported as an unknown colour, not become class 0.
FUSAR_MAP_PALETTES: dict[int, dict[tuple[int, int, int], str]] = {
    1: {
        (255, 0, 0): "building",
        (0, 255, 0): "vegetation",
        (0, 0, 255): "water",
        (255, 255, 0): "road",
        (0, 0, 0): "background",
    },
    2: {
        (0, 0, 255): "water",
        (0, 139, 0): "woodland",
        (0, 255, 0): "vegetation",
        (139, 0, 0): "bare soil",
        (255, 0, 0): "industry",
        (205, 173, 0): "residence",
        (83, 134, 139): "road",
        (0, 139, 139): "paddy",
        (139, 105, 20): "planting",
        (189, 183, 107): "human built",
    },
}

_ROLE_SUFFIX = re.compile(r"[_\-.](sar|lab|label|labels|mask|masks|gt|image|img)$", re.IGNORECASE)


@dataclass(frozen=True)
class RawPair:
    """One image and its label; ``split`` is set when the source fixes it (FUSAR-Map test)."""

    id: str
    image: Path
    label: Path
    split: str | None = None


@dataclass(frozen=True)
class SourceListing:
    """What a source provides: pairs, how labels are stored, and whether it is one scene."""

    pairs: list[RawPair]
    encoding: Encoding
    layout: str  # "files" (split by file) or "scene" (split by spatial blocks)


def pair_key(path: Path) -> str:
    """The name shared by an image and its label: the stem without a role suffix like ``_SAR``."""
    return _ROLE_SUFFIX.sub("", path.stem)


def list_source(params: Params) -> SourceListing:
    """The pairs of the configured external source (not ``synthetic``)."""
    data = params.data
    if data.source == "folder":
        cfg = data.folder
        root = params.path(cfg.root)
        return SourceListing(pair_folder(root / cfg.images, root / cfg.masks), cfg.mask_mode, "files")
    if data.source == "fusar_map":
        cfg = data.fusar_map
        root = params.path(cfg.root)
        check_fusar_palette(params, cfg.version)
        pairs = [
            RawPair(f"{split}_{p.id}", p.image, p.label, split)
            for split in ("train", "test")
            for p in pair_folder(root / "SAR" / split, root / "LAB" / split)
        ]
        return SourceListing(pairs, "rgb", "files")
    if data.source == "scene":
        cfg = data.scene
        image, label = params.path(cfg.image), params.path(cfg.label)
        for path in (image, label):
            if not path.is_file():
                raise DataError(f"{path}: scene file not found; fix data.scene in the params file")
        return SourceListing([RawPair(_file_safe(pair_key(image)), image, label)], "index", "scene")
    raise ValueError(f"list_source does not handle data.source '{data.source}'")


def pair_folder(images_dir: Path, labels_dir: Path) -> list[RawPair]:
    """Pair every raster in ``images_dir`` with the one of the same key in ``labels_dir``."""
    images, labels = _rasters_by_key(images_dir), _rasters_by_key(labels_dir)
    if not images:
        raise DataError(
            f"{images_dir}: no images ({', '.join(RASTER_SUFFIXES)}) found; check the data root in the params file"
        )
    problems = [
        f"{path}: image without a label (no {labels_dir}/{key}.*)" for key, path in images.items() if key not in labels
    ]
    problems += [
        f"{path}: label without an image (no {images_dir}/{key}.*)" for key, path in labels.items() if key not in images
    ]
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise DataError(f"{shown}. Images and labels pair by file name: add the missing files or remove the strays")
    return [RawPair(_file_safe(key), images[key], labels[key]) for key in sorted(images)]


def _file_safe(key: str) -> str:
    """An item id usable in tile file names."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", key)


def _rasters_by_key(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise DataError(f"{folder}: folder not found; check the data root and folder names in the params file")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in RASTER_SUFFIXES or path.name.startswith("."):
            continue
        key = pair_key(path)
        if key in found:
            raise DataError(f"{path}: same name key '{key}' as {found[key]}; keep one file per key")
        found[key] = path
    return found


def check_fusar_palette(params: Params, version: int) -> None:
    """Every configured class colour must be one of the official FUSAR-Map palette of ``version``."""
    palette = FUSAR_MAP_PALETTES[version]
    stray = [f"{c.name} {tuple(c.color)}" for c in params.data.classes if tuple(c.color) not in palette]
    if stray:
        raise DataError(
            f"data.classes colours {stray} are not in the FUSAR-Map {version}.0 palette "
            f"{ {name: color for color, name in palette.items()} }; use those colours or data.source: folder"
        )
