"""Train/val/test assignment of split units (whole files or spatial blocks of one scene).

Two modes (``preprocess.split.mode``):

- ``random`` (default): units are stratified by class presence: each unit's stratum is the
  rarest class it contains, units are ordered by stratum (seeded shuffle inside), and each unit in
  turn goes to the split furthest below its target share. So every stratum is spread over the
  splits in proportion and the rarest classes reach the training split first; with few units or
  many classes a class can still end up in test only.
- ``stratified``: for small labelled areas. Training first gets, class by class (rarest first), a
  unit holding each class present in the free units (the unit that adds most classes not yet
  covered; seeded tie-break), so every class reaches train; then test and val each get a unit of
  every class that has units left, rarest first, up to their shares; the rest is dealt by share
  as in ``random``. The units that cover a class in train are never moved to fill an empty split.

A unit goes to exactly one split either way: blocks never straddle splits.
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
    With ``preprocess.split.mode: stratified`` every class present in a free unit gets a
    training unit (see the module doc).
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

    splits: list[str | None] = list(fixed)
    counts = {s: 0 for s in SPLITS}
    seeded: list[int] = []  # stratified: units given to val/test for their classes (moved last)
    if cfg.mode == "stratified":
        tie = rng.random(n)
        _cover_in_train(presence, free, units_with_class, tie, splits, counts)  # these units never move
        seeded = _seed_eval_splits(presence, free, units_with_class, tie, fractions, splits, counts)
    order = sorted((i for i in free if splits[i] is None), key=lambda i: (stratum(i), rng.random()))
    assigned = sum(counts.values())
    for k, i in enumerate(order, start=assigned + 1):
        chosen = max(("test", "val", "train"), key=lambda s: fractions[s] * k - counts[s])
        splits[i] = chosen
        counts[chosen] += 1
    for s in fixed:
        if s is not None:
            counts[s] += 1
    _fill_empty(splits, counts, seeded + order, required_splits(cfg), what, stratified=cfg.mode == "stratified")
    return splits  # type: ignore[return-value]


def _cover_in_train(
    presence: np.ndarray, free: list[int], units_with_class: np.ndarray, tie: np.ndarray, splits: list, counts: dict
) -> None:
    """Give train one unit of every class present in the free units, rarest class first, each time
    the unit holding most classes not yet covered (ties: ``tie``)."""
    covered = np.zeros(presence.shape[1], dtype=bool)
    chosen: set[int] = set()
    for c in sorted(np.flatnonzero(units_with_class), key=lambda c: (units_with_class[c], c)):
        if covered[c]:
            continue
        candidates = [i for i in free if presence[i, c] and i not in chosen]
        best = max(candidates, key=lambda i: (int((presence[i] & ~covered).sum()), tie[i]))
        chosen.add(best)
        covered |= presence[best]
        splits[best] = "train"
        counts["train"] += 1


def _seed_eval_splits(
    presence: np.ndarray, free: list[int], units_with_class: np.ndarray, tie: np.ndarray,
    fractions: dict[str, float], splits: list, counts: dict,
) -> list[int]:
    """Give test, then val, a unit of each class that still has free units (rarest class first),
    the unit holding most classes the split lacks, while the split is below its share; return them."""
    n_free, given = len(free), []
    for split in ("test", "val"):
        cap = max(1, round(fractions[split] * n_free)) if fractions[split] > 0 else 0
        held = np.zeros(presence.shape[1], dtype=bool)
        for c in sorted(np.flatnonzero(units_with_class), key=lambda c: (units_with_class[c], c)):
            if counts[split] >= cap:
                break
            if held[c]:
                continue
            candidates = [i for i in free if splits[i] is None and presence[i, c]]
            if not candidates:
                continue
            best = max(candidates, key=lambda i: (int((presence[i] & ~held).sum()), tie[i]))
            held |= presence[best]
            splits[best] = split
            counts[split] += 1
            given.append(best)
    return given


def _fill_empty(
    splits: list, counts: dict[str, int], movable: list[int], required: list[str], what: str, stratified: bool = False
) -> None:
    """Move one unit from the largest split into each required split left empty by rounding: the
    last of ``movable`` in that split (the source's fixed units and, in stratified mode, the units
    covering a class in train are not in ``movable``)."""
    if sum(counts.values()) < len(required):
        raise DataError(
            f"only {sum(counts.values())} {what}(s) to split into {', '.join(required)}; "
            f"add data, or lower preprocess.split.block_size for a single scene"
        )
    for empty in [s for s in required if counts[s] == 0]:
        donors = {splits[i] for i in movable}
        donor = max(donors, key=counts.get, default=None)
        if donor is None or counts[donor] <= 1:
            if stratified:
                raise DataError(
                    f"too few {what}s to give every class one in train and every split ({', '.join(required)}) "
                    f"one; lower preprocess.split.block_size for a single scene, or add data"
                )
            raise DataError(f"too few {what}s to give every split ({', '.join(required)}) one; add data")
        unit = next(i for i in reversed(movable) if splits[i] == donor)
        splits[unit] = empty
        counts[donor] -= 1
        counts[empty] += 1
