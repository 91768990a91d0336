"""Train/val/test assignment of split units (whole files or spatial blocks of one scene).

Units are stratified by class presence: each unit's stratum is the rarest class it contains,
units are ordered by stratum (seeded shuffle inside), and each unit in turn goes to the split
furthest below its target share. So every stratum is spread over the splits in proportion and
the rarest classes reach the training split first.
"""

from __future__ import annotations

import numpy as np

from samsar.config import SplitConfig
from samsar.data.errors import DataError

SPLITS = ("train", "val", "test")


def split_fractions(cfg: SplitConfig) -> dict[str, float]:
    """Target share of units per split."""
    if cfg.val + cfg.test >= 1:
        raise DataError(
            f"preprocess.split: val ({cfg.val}) + test ({cfg.test}) must be below 1 to leave a training split"
        )
    return {"train": 1.0 - cfg.val - cfg.test, "val": cfg.val, "test": cfg.test}


def required_splits(cfg: SplitConfig) -> list[str]:
    """Splits that must receive at least one unit (val only when its share is positive)."""
    return [s for s in SPLITS if s != "val" or cfg.val > 0]


def assign_splits(
    presence: np.ndarray, cfg: SplitConfig, what: str, fixed: list[str | None] | None = None
) -> list[str]:
    """Split name per unit.

    ``presence``: ``(n_units, n_classes)`` booleans (class occurs in the unit). ``fixed``: a split
    already decided by the source per unit (``None`` where free). ``what`` names the units in errors.
    """
    n = presence.shape[0]
    fixed = fixed or [None] * n
    fractions = split_fractions(cfg)
    free = [i for i in range(n) if fixed[i] is None]
    if any(s is not None for s in fixed):
        # The source fixes the test set (FUSAR-Map): carve validation out of the free units only.
        fractions = {"train": 1.0 - cfg.val, "val": cfg.val, "test": 0.0}
    rng = np.random.default_rng(cfg.seed)
    units_with_class = presence[free].sum(axis=0)
    rarity = np.where(units_with_class > 0, units_with_class, np.inf)

    def stratum(i: int) -> float:
        present = presence[i]
        return float(rarity[present].min()) if present.any() else np.inf

    order = sorted(free, key=lambda i: (stratum(i), rng.random()))
    splits: list[str | None] = list(fixed)
    counts = {s: 0 for s in SPLITS}
    for k, i in enumerate(order, start=1):
        chosen = max(("test", "val", "train"), key=lambda s: fractions[s] * k - counts[s])
        splits[i] = chosen
        counts[chosen] += 1
    for s in fixed:
        if s is not None:
            counts[s] += 1
    _fill_empty(splits, counts, order, required_splits(cfg), what)
    return splits  # type: ignore[return-value]


def _fill_empty(splits: list, counts: dict[str, int], order: list[int], required: list[str], what: str) -> None:
    """Move one unit from the largest split into each required split left empty by rounding."""
    if sum(counts.values()) < len(required):
        raise DataError(
            f"only {sum(counts.values())} {what}(s) to split into {', '.join(required)}; "
            f"add data, or lower preprocess.split.block_size for a single scene"
        )
    for empty in [s for s in required if counts[s] == 0]:
        movable = {splits[i] for i in order}  # splits fixed by the source give nothing away
        donor = max(movable, key=counts.get, default=None)
        if donor is None or counts[donor] <= 1:
            raise DataError(f"too few {what}s to give every split ({', '.join(required)}) one; add data")
        unit = next(i for i in reversed(order) if splits[i] == donor)
        splits[unit] = empty
        counts[donor] -= 1
        counts[empty] += 1
