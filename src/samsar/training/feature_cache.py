"""Cached frozen-trunk features: run the ViT trunk once per tile, reuse it every epoch.

For variants whose trained part starts after the frozen trunk (``segmenter.supports_feature_cache``:
``decoder_only``, ``parser`` on the neck) the trunk output of a tile never changes during
training. It is stored on disk as fp16 ``.npy`` files, read memory-mapped.

Keys (a changed key means a different file, so stale features are never read):

- the trunk: base checkpoint id (``segmenter.base_id``), backbone and image size -> one
  directory per trunk, with a ``key.json`` sidecar naming them;
- the tile: sha256 of its image content (float32 pixels as the dataset yields them);
- the augmentation: the dihedral code 0-7 of ``training.augment.augment_batch`` (bit 2:
  horizontal flip, bits 0-1: quarter turns). Flips and rotations are not equivariant for a ViT
  with position embeddings, so each of the 8 variants is cached separately (exact, at most 8x
  the storage). Random crops cannot be cached: the loop must not combine them with this cache.

Use in the training loop (drop-in for ``augment_batch`` + ``segmenter(images)``)::

    cached = CachedFeatureDataset(train_tiles, segmenter, FeatureCache.for_segmenter(cache_dir, segmenter), augment=True)
    cached.warm(batch_size)                      # optional: fill the cache up front, batched
    loader = DataLoader(cached, batch_size, shuffle=True, generator=loader_generator)
    for batch in loader:
        features, labels = cached.batch_features(batch, augment_generator)  # same draws as augment_batch
        logits = segmenter.forward_from_trunk(features.to(device))
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from samsar.io import atomic_path, write_json
from samsar.progress import Progress

DIHEDRAL_CODES = tuple(range(8))
FORMAT_VERSION = 1


def trunk_id(segmenter: nn.Module) -> str:
    """Identity of a segmenter's frozen trunk: base checkpoint, backbone and input size."""
    spec = segmenter.spec
    return f"{segmenter.base_id}|{spec.backbone}|{spec.image_size}"


def dihedral(x: torch.Tensor, code: int) -> torch.Tensor:
    """Dihedral transform ``code`` (0-7) of the last two (square) axes, as ``augment_batch`` applies it."""
    if code & 4:
        x = x.flip(-1)
    if code & 3:
        x = torch.rot90(x, code & 3, (-2, -1))
    return x


def draw_dihedral_codes(batch_size: int, generator: torch.Generator) -> list[int]:
    """One dihedral code per sample, drawn exactly as ``augment_batch`` draws them."""
    return torch.randint(0, 8, (batch_size,), generator=generator).tolist()


class FeatureCache:
    """fp16 trunk features on disk, one ``.npy`` per (tile, dihedral code), under one trunk id."""

    def __init__(self, cache_dir: Path | str, trunk: str) -> None:
        self.trunk = trunk
        self.root = Path(cache_dir) / hashlib.sha256(trunk.encode()).hexdigest()[:16]
        sidecar = self.root / "key.json"
        if not sidecar.is_file():
            write_json(sidecar, {"trunk": trunk, "dtype": "float16", "layout": "(H/16, W/16, C)", "version": FORMAT_VERSION})

    @classmethod
    def for_segmenter(cls, cache_dir: Path | str, segmenter: nn.Module) -> "FeatureCache":
        """The cache of ``segmenter``'s trunk; refuses variants that train inside the trunk."""
        if not segmenter.supports_feature_cache:
            raise ValueError(
                f"variant '{segmenter.spec.variant}' trains inside the ViT trunk, so its features change "
                f"every step and cannot be cached; set train.feature_cache: false"
            )
        return cls(cache_dir, trunk_id(segmenter))

    def path(self, key: str, code: int) -> Path:
        """File of tile ``key`` (see :func:`tile_key`) under dihedral transform ``code``."""
        return self.root / f"{key}-d{code}.npy"

    def load(self, key: str, code: int) -> np.ndarray | None:
        """Memory-mapped fp16 features, or None when not cached yet."""
        path = self.path(key, code)
        return np.load(path, mmap_mode="r") if path.is_file() else None

    def store(self, key: str, code: int, features: torch.Tensor) -> None:
        """Write one tile's features ``(h, w, C)`` as fp16 (atomically: concurrent writers are safe)."""
        half = features.detach().to("cpu", torch.float16)
        if not torch.isfinite(half).all():
            raise ValueError(f"trunk features of tile {key} overflow float16 (|x| > 65504); set train.feature_cache: false")
        with atomic_path(self.path(key, code)) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, half.numpy())


def tile_key(image: torch.Tensor) -> str:
    """Content hash of a tile image (what the cache is keyed by)."""
    return hashlib.sha256(image.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:32]


class CachedFeatureDataset(Dataset):
    """A tile dataset (items ``{"image", "label", "tile_id"}``, unaugmented) seen through a
    :class:`FeatureCache`.

    Items are ``{"index", "label", "tile_id", "key"}``; :meth:`batch_features` turns a collated
    batch into ``(features, labels)`` for ``segmenter.forward_from_trunk``, computing missing
    features with the segmenter's trunk (no gradient) and storing them.
    """

    def __init__(self, tile_dataset: Dataset, segmenter: nn.Module, cache: FeatureCache, augment: bool = False) -> None:
        if cache.trunk != trunk_id(segmenter):
            raise ValueError(f"feature cache is for trunk {cache.trunk!r}, the segmenter has {trunk_id(segmenter)!r}")
        if getattr(tile_dataset, "augment", False):
            raise ValueError("pass the tile dataset with augment=False: augmentation is applied per batch here")
        self.tiles = tile_dataset
        self.segmenter = segmenter
        self.cache = cache
        self.augment = augment
        self._keys: dict[int, str] = {}

    def __len__(self) -> int:
        return len(self.tiles)

    def __getitem__(self, index: int) -> dict:
        item = self.tiles[index]
        key = self._keys.setdefault(index, tile_key(item["image"]))
        return {"index": index, "label": item["label"], "tile_id": item["tile_id"], "key": key}

    def batch_features(self, batch: dict, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(features fp16 (B, h, w, C), labels (B, H, W))`` of a collated batch; with ``augment``,
        one dihedral code per sample is drawn from ``generator`` like ``augment_batch`` does."""
        indices = [int(i) for i in batch["index"]]
        if self.augment:
            if generator is None:
                raise ValueError("augment=True needs the augmentation generator")
            codes = draw_dihedral_codes(len(indices), generator)
        else:
            codes = [0] * len(indices)
        keys = list(batch["key"])
        self._fill(list(zip(indices, keys, codes)))
        features = torch.stack([torch.from_numpy(np.array(self.cache.load(k, c))) for k, c in zip(keys, codes)])
        labels = torch.stack([dihedral(label, c) for label, c in zip(batch["label"], codes)])
        return features, labels

    def warm(self, batch_size: int = 8) -> None:
        """Compute every missing feature file now (all 8 dihedral codes with ``augment``), batched."""
        codes = DIHEDRAL_CODES if self.augment else (0,)
        entries = []
        for index in range(len(self)):
            key = self._keys.get(index) or self[index]["key"]
            entries += [(index, key, c) for c in codes]
        self._fill(entries, batch_size=batch_size, progress=True)

    def _fill(self, entries: Sequence[tuple[int, str, int]], batch_size: int | None = None, progress: bool = False) -> None:
        missing = [e for e in dict.fromkeys(entries) if not self.cache.path(e[1], e[2]).is_file()]
        if not missing:
            return
        step = batch_size or len(missing)
        starts = range(0, len(missing), step)
        chunks: Iterable[int] = starts
        if progress:
            distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
            main = not distributed or torch.distributed.get_rank() == 0  # one line per step, not one per rank
            chunks = Progress(len(starts), "caching trunk features", enabled=main, unit="batch").iterate(starts)
        device = next(self.segmenter.parameters()).device
        for start in chunks:
            chunk = missing[start : start + step]
            images = torch.stack([dihedral(self.tiles[i]["image"], c) for i, _, c in chunk]).to(device)
            with torch.no_grad():
                features = self.segmenter.trunk_features(images)
            for (_, key, code), f in zip(chunk, features):
                self.cache.store(key, code, f)
