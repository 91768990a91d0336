"""Uncertainty of test scores: per-tile confusion matrices and the paired bootstrap over tiles.

Every evaluation keeps one confusion matrix per (seed, test tile). Two models tested on the same
tiles are then compared pairwise: each bootstrap replicate draws the test tiles with replacement
(the same draw for both models, hence *paired*) and, independently for each model, its seeds with
replacement; the statistic is the difference of the seed-mean mIoUs. The 95 % percentile interval
of that difference therefore carries both the tile sampling and the seed-to-seed spread.

Plain numpy, below the evaluation and tracking layers: the comparison report and the promotion
gate use the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from samsar.io import atomic_path

BOOTSTRAP_REPLICATES = 2000
CONFIDENCE = 0.95


@dataclass(frozen=True)
class TileConfusions:
    """Confusion matrices ``confusion[s, t]`` (truth rows, prediction columns) of seed ``seeds[s]`` on tile ``tile_ids[t]``."""

    confusion: np.ndarray  # (S, T, K, K) int64
    seeds: tuple[int, ...]
    tile_ids: tuple[str, ...]
    class_names: tuple[str, ...]

    def __post_init__(self) -> None:
        s, t, k = len(self.seeds), len(self.tile_ids), len(self.class_names)
        if self.confusion.shape != (s, t, k, k):
            raise ValueError(f"confusion shape {self.confusion.shape} does not match {s} seeds x {t} tiles x {k} classes")

    def save(self, path: Path | str) -> Path:
        """Write an ``.npz`` atomically."""
        path = Path(path)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez_compressed(
                    f,
                    confusion=self.confusion.astype(np.int64),
                    seeds=np.asarray(self.seeds, dtype=np.int64),
                    tile_ids=np.asarray(self.tile_ids, dtype=str),
                    class_names=np.asarray(self.class_names, dtype=str),
                )
        return path

    @classmethod
    def load(cls, path: Path | str) -> "TileConfusions":
        """Read what :meth:`save` wrote; names the file when it is not such an archive."""
        try:
            with np.load(path, allow_pickle=False) as data:
                return cls(
                    confusion=data["confusion"].astype(np.int64),
                    seeds=tuple(int(s) for s in data["seeds"]),
                    tile_ids=tuple(str(t) for t in data["tile_ids"]),
                    class_names=tuple(str(c) for c in data["class_names"]),
                )
        except (OSError, KeyError, ValueError) as exc:
            raise ValueError(f"{path}: not a per-tile confusion archive ({exc}); run `samsar evaluate` again") from exc

    def majority(self, class_index: int) -> "TileConfusions":
        """The matrices of predicting ``class_index`` everywhere on the same tiles (one pseudo-seed)."""
        truth = self.confusion[0].sum(axis=2)  # (T, K): labelled pixels per tile and class
        cm = np.zeros((1, *self.confusion.shape[1:]), dtype=np.int64)
        cm[0, :, :, class_index] = truth
        return TileConfusions(cm, (-1,), self.tile_ids, self.class_names)


def miou(confusion: np.ndarray) -> np.ndarray:
    """mIoU over the last two axes ``(..., K, K)``; classes absent from truth and prediction are left out."""
    confusion = np.asarray(confusion, dtype=np.float64)
    tp = np.diagonal(confusion, axis1=-2, axis2=-1)
    union = confusion.sum(axis=-1) + confusion.sum(axis=-2) - tp
    present = union > 0
    iou = np.divide(tp, union, out=np.zeros_like(tp), where=present)
    count = present.sum(axis=-1)
    return np.divide(iou.sum(axis=-1), count, out=np.full(count.shape, np.nan), where=count > 0)


@dataclass(frozen=True)
class Interval:
    """A difference of seed-mean mIoU (``a - b``) and its bootstrap percentile interval."""

    difference: float
    low: float
    high: float
    confidence: float = CONFIDENCE
    replicates: int = BOOTSTRAP_REPLICATES

    @property
    def verdict(self) -> str:
        """``better`` / ``worse`` when the interval excludes 0, else ``within noise``."""
        if self.low > 0:
            return "better"
        if self.high < 0:
            return "worse"
        return "within noise"

    def to_dict(self) -> dict:
        return {"difference": self.difference, "low": self.low, "high": self.high,
                "confidence": self.confidence, "replicates": self.replicates, "verdict": self.verdict}

    def __str__(self) -> str:
        return f"{self.difference:+.3f} [{self.low:+.3f}, {self.high:+.3f}]"


def paired_bootstrap(
    a: TileConfusions,
    b: TileConfusions,
    replicates: int = BOOTSTRAP_REPLICATES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> Interval:
    """Interval of mIoU(a) - mIoU(b), resampling test tiles (paired) and each model's seeds.

    Both must hold the same tiles in the same order and the same classes. Deterministic for a
    given ``seed``.
    """
    if a.tile_ids != b.tile_ids:
        raise ValueError("the two evaluations were not made on the same test tiles; compare models tested on the same data")
    if a.class_names != b.class_names:
        raise ValueError(f"class names differ: {list(a.class_names)} vs {list(b.class_names)}")
    rng = np.random.default_rng(seed)
    n_tiles = len(a.tile_ids)
    weights = rng.multinomial(n_tiles, np.full(n_tiles, 1.0 / n_tiles), size=replicates).astype(np.float64)  # (B, T)

    def replicate_means(x: TileConfusions) -> np.ndarray:
        per_seed = miou(np.einsum("bt,stkl->bskl", weights, x.confusion.astype(np.float64)))  # (B, S)
        draw = rng.integers(0, per_seed.shape[1], size=per_seed.shape)
        return np.nanmean(np.take_along_axis(per_seed, draw, axis=1), axis=1)

    observed = float(np.nanmean(miou(a.confusion.sum(axis=1))) - np.nanmean(miou(b.confusion.sum(axis=1))))
    diffs = replicate_means(a) - replicate_means(b)
    tail = (1.0 - confidence) / 2.0
    low, high = np.nanquantile(diffs, [tail, 1.0 - tail])
    return Interval(observed, float(low), float(high), confidence, replicates)


def mean_and_std(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (ddof 1; 0 for one value) of the defined values; None when none is."""
    defined = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    if defined.size == 0:
        return None, None
    std = float(defined.std(ddof=1)) if defined.size > 1 else 0.0
    return float(defined.mean()), std
