"""Per-tile confusion archives and the paired bootstrap over tiles and seeds."""

import numpy as np
import pytest

from samsar.evaluation.metrics import segmentation_metrics
from samsar.uncertainty import TileConfusions, mean_and_std, miou, paired_bootstrap, seed_mean_interval

NAMES = ("water", "land", "road")


def _random_tiles(rng, seeds=3, tiles=15, shift=0):
    cm = rng.integers(0, 50, size=(seeds, tiles, 3, 3))
    cm[..., np.arange(3), np.arange(3)] += 400 + shift
    return TileConfusions(cm.astype(np.int64), tuple(range(seeds)), tuple(f"t{i}" for i in range(tiles)), NAMES)


def test_miou_matches_the_metrics_module_and_skips_absent_classes():
    cm = np.array([[50, 5, 0], [10, 30, 0], [0, 0, 0]])
    assert miou(cm) == pytest.approx(segmentation_metrics(cm, list(NAMES))["mIoU"])
    assert np.isnan(miou(np.zeros((3, 3))))


def test_archive_round_trip_and_majority(tmp_path):
    tiles = _random_tiles(np.random.default_rng(0))
    path = tiles.save(tmp_path / "m.tiles.npz")
    back = TileConfusions.load(path)
    assert back.seeds == tiles.seeds and back.tile_ids == tiles.tile_ids and back.class_names == NAMES
    assert np.array_equal(back.confusion, tiles.confusion)
    majority = tiles.majority(1).confusion
    assert majority.shape == (1, 15, 3, 3) and (majority[..., [0, 2]] == 0).all()
    assert np.array_equal(majority[0, :, :, 1], tiles.confusion[0].sum(axis=2))
    (tmp_path / "bad.npz").write_bytes(b"not an archive")
    with pytest.raises(ValueError, match="bad.npz"):
        TileConfusions.load(tmp_path / "bad.npz")


def test_identical_models_are_within_noise_and_a_clear_gain_is_not():
    rng = np.random.default_rng(1)
    a = _random_tiles(rng)
    same = paired_bootstrap(a, a)
    assert same.difference == 0 and same.low <= 0 <= same.high and same.verdict == "within noise"
    b = _random_tiles(rng)  # other noise, same distribution
    assert paired_bootstrap(b, a).verdict == "within noise"
    better = TileConfusions(a.confusion + np.eye(3, dtype=np.int64) * 300, a.seeds, a.tile_ids, NAMES)
    gain = paired_bootstrap(better, a)
    assert gain.low > 0 and gain.verdict == "better" and paired_bootstrap(a, better).verdict == "worse"
    assert paired_bootstrap(better, a) == gain  # deterministic


def test_seed_spread_widens_the_interval():
    rng = np.random.default_rng(2)
    a = _random_tiles(rng, seeds=1)
    steady = TileConfusions(np.repeat(a.confusion, 3, axis=0), (0, 1, 2), a.tile_ids, NAMES)
    noisy_cm = steady.confusion.copy()
    noisy_cm[1, :, 0, 1] += 300  # one bad seed
    noisy = TileConfusions(noisy_cm, (0, 1, 2), a.tile_ids, NAMES)
    narrow, wide = paired_bootstrap(steady, a), paired_bootstrap(noisy, a)
    assert (wide.high - wide.low) > (narrow.high - narrow.low)


def test_one_models_interval_holds_its_seed_mean_and_widens_with_seed_spread():
    rng = np.random.default_rng(4)
    a = _random_tiles(rng)
    low, high = seed_mean_interval(a)
    assert low < float(np.mean(miou(a.confusion.sum(axis=1)))) < high
    assert seed_mean_interval(a) == (low, high)  # deterministic
    noisy_cm = a.confusion.copy()
    noisy_cm[1, :, 0, 1] += 300  # one bad seed
    wide = seed_mean_interval(TileConfusions(noisy_cm, a.seeds, a.tile_ids, NAMES))
    assert wide[1] - wide[0] > high - low
    no_tiles = TileConfusions(np.zeros((3, 0, 3, 3), np.int64), a.seeds, (), NAMES)
    assert seed_mean_interval(no_tiles) is None
    assert seed_mean_interval(TileConfusions(np.zeros_like(a.confusion), a.seeds, a.tile_ids, NAMES)) is None  # undefined


def test_models_on_other_tiles_cannot_be_paired():
    rng = np.random.default_rng(3)
    a, b = _random_tiles(rng), _random_tiles(rng, tiles=14)
    with pytest.raises(ValueError, match="same test tiles"):
        paired_bootstrap(a, b)


def test_mean_and_std():
    assert mean_and_std([0.5, 0.7, None]) == (pytest.approx(0.6), pytest.approx(np.std([0.5, 0.7], ddof=1)))
    assert mean_and_std([0.4]) == (0.4, 0.0)
    assert mean_and_std([None, float("nan")]) == (None, None)
