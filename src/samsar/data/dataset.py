"""Torch access to the processed tiles: :class:`DatasetInfo` and :class:`TileDataset`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import Dataset

from samsar.data.errors import DataError
from samsar.data.preprocess import DATASET_NAME, MANIFEST_NAME
from samsar.data.scaling import SarScaler
from samsar.data.splits import SPLITS


@dataclass(frozen=True)
class DatasetInfo:
    """What ``dataset.json`` says about the processed tiles."""

    class_names: list[str]
    colors: list[tuple[int, int, int]]
    ignore_index: int
    background: str | None
    tile_size: int
    scaler: SarScaler
    source: str

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @classmethod
    def load(cls, processed_dir: Path | str) -> "DatasetInfo":
        """Read ``processed_dir/dataset.json``."""
        path = Path(processed_dir) / DATASET_NAME
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: cannot read the dataset description ({exc}); run `samsar preprocess`") from exc
        return cls(
            class_names=[c["name"] for c in doc["classes"]],
            colors=[tuple(c["color"]) for c in doc["classes"]],
            ignore_index=doc["ignore_index"],
            background=doc["background"],
            tile_size=doc["tile_size"],
            scaler=SarScaler.from_dict(doc["scaling"]),
            source=doc["source"],
        )


class TileDataset(Dataset):
    """Tiles of one split: ``{"image": FloatTensor (3, T, T) in [0, 1], "label": LongTensor (T, T), "tile_id": str}``.

    Images are memory-mapped ``.npy`` files. Augmentation is applied per batch by the training loop
    (``samsar.training.augment``), so resumed runs and the feature cache draw the same transforms.
    """

    def __init__(self, processed_dir: Path | str, split: str):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got '{split}'")
        self.processed_dir = Path(processed_dir)
        self.info = DatasetInfo.load(self.processed_dir)
        manifest = pd.read_parquet(self.processed_dir / MANIFEST_NAME)
        self.frame = manifest[manifest["split"] == split].reset_index(drop=True)
        self.split = split

    def __len__(self) -> int:
        return len(self.frame)

    def class_pixel_counts(self) -> np.ndarray:
        """Labelled pixels per class over the split, shape ``(K,)`` (e.g. for class weights)."""
        return self.frame[[f"count_{n}" for n in self.info.class_names]].sum().to_numpy(dtype=np.int64)

    def __getitem__(self, index: int) -> dict:
        row = self.frame.iloc[index]
        image = np.load(self.processed_dir / row["image_path"], mmap_mode="r")
        with Image.open(self.processed_dir / row["label_path"]) as img:
            label = np.asarray(img)
        return {
            "image": torch.from_numpy(np.array(image, dtype=np.float32)),  # copies out of the memory map
            "label": torch.from_numpy(label.astype(np.int64)),
            "tile_id": row["tile_id"],
        }
