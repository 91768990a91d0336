"""Helpers for the data-stage tests: small params files, raster writers, a tiny folder dataset."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import rasterio
import yaml
from PIL import Image
from rasterio.errors import NotGeoreferencedWarning

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO_ROOT / ".." / "shared" / "data"

FUSAR1_CLASSES = [
    {"name": "building", "color": [255, 0, 0]},
    {"name": "vegetation", "color": [0, 255, 0]},
    {"name": "water", "color": [0, 0, 255]},
    {"name": "road", "color": [255, 255, 0]},
    {"name": "background", "color": [0, 0, 0]},
]


def write_params(folder: Path, data: dict | None = None, preprocess: dict | None = None, **top) -> Path:
    """A params.yaml in ``folder``: a small synthetic dataset unless ``data`` says otherwise."""
    doc = {
        "seed": 0,
        "data": {
            "name": "test",
            "source": "synthetic",
            "classes": FUSAR1_CLASSES,
            "synthetic": {"n_scenes": 6, "scene_size": 256, "looks": 1, "seed": 0},
            **(data or {}),
        },
        "preprocess": {
            "tile_size": 128,
            "stride": 128,
            "split": {"val": 0.2, "test": 0.2, "block_size": 256, "seed": 0},
            **(preprocess or {}),
        },
        **top,
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def write_tiff(path: Path, array: np.ndarray) -> Path:
    """Write ``(H, W)`` or ``(H, W, C)`` as an (ungeoreferenced) TIFF of the array's dtype."""
    bands = array[None] if array.ndim == 2 else np.moveaxis(array, -1, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(
            path,
            "w",
            driver="GTiff",
            height=bands.shape[1],
            width=bands.shape[2],
            count=bands.shape[0],
            dtype=bands.dtype,
        ) as ds:
            ds.write(bands)
    return path


def write_png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def rgb_mask(index_mask: np.ndarray, classes: list[dict]) -> np.ndarray:
    """Colour an index mask with the classes' palette."""
    palette = np.array([c["color"] for c in classes], dtype=np.uint8)
    return palette[index_mask]


def make_folder_dataset(root: Path, n: int = 6, size: int = 64, classes=FUSAR1_CLASSES, seed: int = 0) -> Path:
    """``root/images/*.tif`` (float32 intensity) + ``root/masks/*.png`` (RGB), every class in each mask."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        index = np.repeat(np.arange(len(classes)), -(-size * size // len(classes)))[: size * size].reshape(size, size)
        index = np.roll(index, i * 7, axis=0).astype(np.uint8)
        write_tiff(
            root / "images" / f"chip_{i:02d}.tif", rng.exponential(1.0 + index, size=(size, size)).astype(np.float32)
        )
        write_png(root / "masks" / f"chip_{i:02d}.png", rgb_mask(index, classes))
    return root
