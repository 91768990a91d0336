"""Uncertainty of test scores: per-tile confusion matrices and the paired bootstrap over tiles.

Every evaluation keeps one confusion matrix per (seed, test tile). Two models tested on the same
tiles are then compared pairwise: each bootstrap replicate draws the test tiles with replacement
(the same draw for both models, hence *paired*) and, independently for each model, its seeds with
replacement; the statistic is the difference of the seed-mean mIoUs. The 95 % percentile interval
of that difference therefore carries both the tile sampling and the seed-to-seed spread. One model's
headline scores get their interval the same way (:func:`seed_mean_intervals`: tiles, then seeds).

Plain numpy, below the evaluation and tracking layers: the comparison report and the promotion
gate use the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
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


def _tile_weights(rng: np.random.Generator, n_tiles: int, replicates: int) -> np.ndarray:
    """``(B, T)`` counts of each test tile in each replicate's draw with replacement."""
    return rng.multinomial(n_tiles, np.full(n_tiles, 1.0 / n_tiles), size=replicates).astype(np.float64)


def _seed_means(rng: np.random.Generator, weights: np.ndarray, per_tile: np.ndarray,
                scores: Callable[[np.ndarray], Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Per replicate, the mean over seeds drawn with replacement of each score of the replicate's
    pooled tiles (``per_tile``: ``(S, T, ...)`` counts): ``(B,)`` arrays, NaN where no drawn seed has
    the score defined."""
    per_seed = scores(np.einsum("bt,st...->bs...", weights, per_tile.astype(np.float64)))  # (B, S) each
    n_seeds = per_tile.shape[0]
    draw = rng.integers(0, n_seeds, size=(weights.shape[0], n_seeds))
    means = {}
    for key, values in per_seed.items():
        drawn = np.take_along_axis(values, draw, axis=1)
        defined = ~np.isnan(drawn)
        count = defined.sum(axis=1)
        means[key] = np.divide(np.where(defined, drawn, 0.0).sum(axis=1), count,
                               out=np.full(count.shape, np.nan), where=count > 0)
    return means


def _percentiles(values: np.ndarray, confidence: float) -> tuple[float, float] | None:
    """The central ``confidence`` percentile interval of the defined values; None when none is."""
    values = values[~np.isnan(values)]
    if values.size == 0:
        return None
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(values, [tail, 1.0 - tail])
    return float(low), float(high)


def seed_mean_intervals(
    tiles: TileConfusions | np.ndarray,
    scores: Callable[[np.ndarray], Mapping[str, np.ndarray]],
    replicates: int = BOOTSTRAP_REPLICATES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> dict[str, tuple[float, float] | None]:
    """Percentile interval of the seed mean of each score, resampling test tiles then seeds.

    ``tiles``: the confusion matrices, or any per-(seed, tile) counts ``(S, T, ...)`` that add up
    over tiles. ``scores`` maps pooled counts ``(..., *rest)`` (for confusions ``(..., K, K)``) to
    named ``(...)`` arrays, NaN where undefined. None for a score undefined in every replicate, and
    for every score without tiles. Deterministic for a given ``seed``.
    """
    per_tile = tiles.confusion if isinstance(tiles, TileConfusions) else np.asarray(tiles)
    rng = np.random.default_rng(seed)
    n_tiles = per_tile.shape[1]
    if n_tiles == 0:
        return {key: None for key in scores(np.zeros((0, *per_tile.shape[2:])))}
    means = _seed_means(rng, _tile_weights(rng, n_tiles, replicates), per_tile, scores)
    return {key: _percentiles(values, confidence) for key, values in means.items()}


def seed_mean_interval(
    tiles: TileConfusions | np.ndarray,
    metric: Callable[[np.ndarray], np.ndarray] = miou,
    replicates: int = BOOTSTRAP_REPLICATES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> tuple[float, float] | None:
    """:func:`seed_mean_intervals` of one score (default the mIoU); None without tiles or when undefined."""
    return seed_mean_intervals(tiles, lambda cm: {"": metric(cm)}, replicates, confidence, seed)[""]


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
    weights = _tile_weights(rng, len(a.tile_ids), replicates)  # the same tile draw for both: paired

    def scores(cm: np.ndarray) -> dict[str, np.ndarray]:
        return {"mIoU": miou(cm)}

    observed = float(np.nanmean(miou(a.confusion.sum(axis=1))) - np.nanmean(miou(b.confusion.sum(axis=1))))
    diffs = _seed_means(rng, weights, a.confusion, scores)["mIoU"] - _seed_means(rng, weights, b.confusion, scores)["mIoU"]
    low, high = _percentiles(diffs, confidence) or (float("nan"), float("nan"))
    return Interval(observed, low, high, confidence, replicates)


def mean_and_std(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (ddof 1; 0 for one value) of the defined values; None when none is."""
    defined = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    if defined.size == 0:
        return None, None
    std = float(defined.std(ddof=1)) if defined.size > 1 else 0.0
    return float(defined.mean()), std
