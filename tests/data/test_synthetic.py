"""The SAR scene simulator: determinism, classes, and realistic difficulty."""

import numpy as np
import pytest
from scipy import ndimage
from sklearn.discriminant_analysis import QuadraticDiscriminantAnalysis

from samsar.config import SyntheticConfig
from samsar.data.errors import DataError
from samsar.data.synthetic import SOURCE_CLASSES, generate_scene

NAMES = ["building", "vegetation", "water", "road", "background"]


def _db(intensity):
    return 10 * np.log10(np.maximum(intensity, 1e-10))


def test_scene_is_deterministic_per_seed_and_index():
    cfg = SyntheticConfig(scene_size=128, seed=3)
    a, la = generate_scene(cfg, 5, NAMES)
    b, lb = generate_scene(cfg, 5, NAMES)
    c, _ = generate_scene(cfg, 6, NAMES)
    d, _ = generate_scene(SyntheticConfig(scene_size=128, seed=4), 5, NAMES)
    assert np.array_equal(a, b) and np.array_equal(la, lb)
    assert not np.array_equal(a, c) and not np.array_equal(a, d)
    assert a.dtype == np.float32 and la.dtype == np.uint8 and a.shape == la.shape == (128, 128)
    assert (a > 0).all() and np.isfinite(a).all()


def test_labels_follow_the_order_of_class_names():
    cfg = SyntheticConfig(scene_size=256, seed=1)
    _, label = generate_scene(cfg, 0, NAMES)
    _, reordered = generate_scene(cfg, 0, list(reversed(NAMES)))
    assert set(np.unique(label)) <= set(range(5))
    assert np.array_equal(reordered, 4 - label)


def test_speckle_follows_the_number_of_looks():
    # Over a large homogeneous water region the intensity's coefficient of variation is ~1/sqrt(L).
    def water_cv(looks):
        intensity, label = generate_scene(SyntheticConfig(scene_size=384, looks=looks, seed=2), 0, NAMES)
        water = ndimage.binary_erosion(label == NAMES.index("water"), iterations=4)
        ratio = intensity / ndimage.uniform_filter(intensity, 15)
        return ratio[water].std()

    assert water_cv(1) == pytest.approx(1.0, abs=0.2)
    assert water_cv(8) == pytest.approx(1 / np.sqrt(8), abs=0.1)


def test_roads_are_thin_and_buildings_cast_shadow_to_the_right():
    intensity, label = generate_scene(SyntheticConfig(scene_size=512, looks=64, seed=0), 1, NAMES)
    road = label == NAMES.index("road")
    assert road.any()
    # Thin: three erosions remove nearly all road pixels (only crossings survive).
    assert ndimage.binary_erosion(road, iterations=3).sum() < 0.03 * road.sum()
    building = label == NAMES.index("building")
    db = _db(intensity)
    west_edge = building.copy()
    west_edge[:, 1:] &= ~building[:, :-1]
    assert db[west_edge].mean() > db[building & ~west_edge].mean() + 3  # double bounce facing the radar
    east_of_building = np.zeros_like(building)
    east_of_building[:, 1:] = building[:, :-1] & ~building[:, 1:]
    open_road = road & ~ndimage.binary_dilation(building, iterations=8)
    assert db[east_of_building].mean() < db[open_road].mean() - 3  # radar shadow on the far-range side


def test_class_names_map_by_alias_and_unknown_names_fail():
    cfg = SyntheticConfig(scene_size=128)
    _, label = generate_scene(cfg, 0, ["industry", "woodland", "water", "road", "other"])
    assert label.max() < 5
    with pytest.raises(DataError, match="ship"):
        generate_scene(cfg, 0, ["background", "ship"])


def test_source_domain_has_its_own_classes_and_statistics():
    cfg = SyntheticConfig(scene_size=256, looks=8, seed=1000, domain="source")
    intensity, label = generate_scene(cfg, 0, SOURCE_CLASSES)
    assert len(SOURCE_CLASSES) == 6 and not set(SOURCE_CLASSES) & {"building", "road", "background"}
    assert len(np.unique(label)) >= 5
    with pytest.raises(DataError):
        generate_scene(cfg, 0, NAMES)
    target, _ = generate_scene(SyntheticConfig(scene_size=256, looks=8, seed=1000), 0, NAMES)
    assert not np.allclose(np.median(_db(intensity)), np.median(_db(target)), atol=0.1)


@pytest.fixture(scope="module")
def single_look_scenes():
    cfg = SyntheticConfig(scene_size=512, looks=1, seed=7)
    scenes = [generate_scene(cfg, i, NAMES) for i in range(6)]
    return [_db(x) for x, _ in scenes], [y for _, y in scenes]


def test_classes_overlap_per_pixel_on_single_look_data(single_look_scenes):
    """The Bayes (histogram) classifier on the dB value alone, fitted on the data itself, stays below 60 %."""
    dbs, labels = single_look_scenes
    db, label = np.concatenate([d.ravel() for d in dbs]), np.concatenate([y.ravel() for y in labels])
    bins = np.clip(np.digitize(db, np.linspace(-50, 30, 321)), 0, 321)
    joint = np.zeros((len(NAMES), 322))
    np.add.at(joint, (label, bins), 1)
    bayes_accuracy = joint.max(axis=0).sum() / joint.sum()
    assert bayes_accuracy < 0.60
    assert bayes_accuracy > 1.0 / len(NAMES)  # yet backscatter is informative


def test_classes_are_separable_with_spatial_context(single_look_scenes):
    """Local means and deviations of dB at a few scales + a small classifier (QDA) on held-out scenes."""
    dbs, labels = single_look_scenes

    def features(db):
        columns = [db]
        for size in (5, 11, 21):
            mean = ndimage.uniform_filter(db, size)
            columns += [mean, np.sqrt(np.maximum(ndimage.uniform_filter(db * db, size) - mean * mean, 0))]
        return np.stack([c.ravel() for c in columns], axis=1)

    train_x = np.concatenate([features(d) for d in dbs[:3]])
    train_y = np.concatenate([y.ravel() for y in labels[:3]])
    pick = np.random.default_rng(0).choice(len(train_x), 20_000, replace=False)
    model = QuadraticDiscriminantAnalysis(reg_param=0.01).fit(train_x[pick], train_y[pick])
    test_x = np.concatenate([features(d) for d in dbs[3:]])
    test_y = np.concatenate([y.ravel() for y in labels[3:]])
    assert (model.predict(test_x) == test_y).mean() > 0.75
