"""Helpers for the inference tests: tiny untrained adapters, scalers and GeoTIFF scenes."""

from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS

from samsar.data.scaling import SarScaler
from samsar.models.artifacts import save_adapter
from samsar.models.variants import build_segmenter

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
UTM = CRS.from_epsg(32633)
TEN_METRES = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 4600000.0)
CLASS_NAMES = ["water", "land", "urban"]
CLASS_COLORS = [(0, 0, 255), (0, 255, 0), (255, 0, 0)]
# Intensity in dB between -20 and 0 maps to [0, 1], as a fitted training scaler would.
INTENSITY_SCALER = SarScaler(input_kind="intensity", to_db=True, low=(-20.0,), high=(0.0,))
PAULI_SCALER = SarScaler(input_kind="amplitude", to_db=False, low=(0.0, 0.0, 0.0), high=(255.0, 255.0, 255.0))


def meta_for(scaler: SarScaler, image_size: int) -> dict:
    """adapter.json-style metadata for a predictor."""
    return {"image_size": image_size, "class_names": CLASS_NAMES, "class_colors": CLASS_COLORS, "scaling": scaler.to_dict()}


def make_adapter(out_dir: Path, scaler: SarScaler, image_size: int, variant: str = "decoder_only", checkpoint=None) -> Path:
    segmenter = build_segmenter(variant, backbone="tiny", image_size=image_size, num_classes=len(CLASS_NAMES), checkpoint=checkpoint)
    meta = meta_for(scaler, image_size)
    del meta["image_size"]  # recorded by save_adapter itself
    return save_adapter(segmenter, out_dir, meta)


def write_geotiff(path: Path, data: np.ndarray, crs=UTM, transform=TEN_METRES, nodata=None) -> Path:
    bands = data[None] if data.ndim == 2 else np.moveaxis(data, -1, 0)
    profile = dict(driver="GTiff", height=bands.shape[1], width=bands.shape[2], count=bands.shape[0], dtype=bands.dtype, nodata=nodata)
    if crs is not None:
        profile.update(crs=crs, transform=transform)
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(bands)
    return path


def speckle_scene(height: int, width: int, seed: int = 0) -> np.ndarray:
    """float32 intensity with a left/right contrast and single-look speckle."""
    rng = np.random.default_rng(seed)
    mean = np.where(np.arange(width) < width // 2, 0.02, 0.3).astype(np.float32)
    return (mean[None, :] * rng.exponential(1.0, size=(height, width))).astype(np.float32)
