"""Minimum mapping unit: regions and holes below N pixels take the class around them; recorded in the class map."""

import csv

import numpy as np
import pytest
import rasterio
from predict_helpers import CLASS_NAMES, speckle_scene, write_geotiff
from scipy import ndimage
from typer.testing import CliRunner

from samsar.cli import app
from samsar.inference.outputs import NODATA_CLASS
from samsar.inference.postprocess import MMU_TAG, MinimumMappingUnit, remove_small_regions
from samsar.inference.predict import predict_scene


def _map() -> np.ndarray:
    """Class 0 everywhere; a 3-pixel island of class 1, a 12-pixel island of class 2, a 2-pixel hole
    (class 0) inside a 36-pixel block of class 1."""
    classes = np.zeros((20, 20), dtype=np.uint8)
    classes[2, 2:5] = 1  # 3 px
    classes[10:13, 2:6] = 2  # 12 px
    classes[10:16, 10:16] = 1  # 36 px ...
    classes[12, 12:14] = 0  # ... with a 2 px hole
    return classes


def test_a_three_pixel_island_is_removed_and_a_larger_one_kept():
    classes = _map()
    out = remove_small_regions(classes, 5)
    assert (out[2, 2:5] == 0).all()  # the island takes the class around it
    assert (out[10:13, 2:6] == 2).all()  # 12 px >= 5: kept
    assert (out[10:16, 10:16] == 1).all()  # the hole is filled with the enclosing class
    assert ((out != classes).sum()) == 3 + 2
    assert (remove_small_regions(classes, 13)[10:13, 2:6] == 0).all()  # below 13 px the 12 px island goes too
    np.testing.assert_array_equal(remove_small_regions(classes, 0), classes)  # off
    np.testing.assert_array_equal(remove_small_regions(classes, 2), classes)  # no region smaller than 2 px


def test_nodata_is_never_changed_nor_spread():
    classes = _map()
    classes[:, 17:] = NODATA_CLASS
    classes[5, 16] = 2  # one pixel between class 0 and nodata
    out = remove_small_regions(classes, 5)
    assert (out[:, 17:] == NODATA_CLASS).all() and out[5, 16] == 0
    only_small = np.full((6, 6), NODATA_CLASS, dtype=np.uint8)
    only_small[2, 2] = 1
    np.testing.assert_array_equal(remove_small_regions(only_small, 5), only_small)  # nothing kept to absorb it


@pytest.mark.parametrize("band", [1, 7, 48, 200])
def test_streaming_in_bands_equals_the_whole_map(band):
    rng = np.random.default_rng(band)
    # blobs of 4 classes at several scales, so regions of every size cross the band edges
    noise = ndimage.gaussian_filter(rng.normal(size=(4, 120, 90)), sigma=(0, 2.0, 2.0))
    classes = noise.argmax(axis=0).astype(np.uint8)
    classes[40:45, :30] = NODATA_CLASS
    expected = remove_small_regions(classes, 30)
    assert (expected != classes).any()  # the case exercises removals
    mmu = MinimumMappingUnit(30, len(classes))
    bands = [b for row0 in range(0, len(classes), band) for b in mmu.push(row0, classes[row0 : row0 + band])]
    bands += mmu.finish()
    assert [row0 for row0, _ in bands] == sorted({row0 for row0, _ in bands})
    np.testing.assert_array_equal(np.concatenate([rows for _, rows in bands]), expected)
    with pytest.raises(ValueError, match="in order"):
        MinimumMappingUnit(5, 10).push(3, classes[:2])


def test_predict_applies_the_mmu_to_map_preview_and_areas_and_records_it(tmp_path, intensity_adapter):
    scene = write_geotiff(tmp_path / "scene.tif", speckle_scene(150, 250))
    plain = predict_scene(intensity_adapter, scene, tmp_path / "plain.tif", device="cpu")
    result = CliRunner().invoke(app, ["predict", "--model", str(intensity_adapter), "-i", str(scene), "-o",
                                      str(tmp_path / "mmu.tif"), "--device", "cpu", "--min-mapping-unit", "25",
                                      "--params", str(tmp_path / "none.yaml")])
    assert result.exit_code == 0, result.output
    with rasterio.open(plain.class_map) as ds:
        raw = ds.read(1)
        assert MMU_TAG not in ds.tags()
    with rasterio.open(tmp_path / "mmu.tif") as ds:
        cleaned = ds.read(1)
        assert ds.tags()[MMU_TAG] == "25" and "nearest kept pixel" in ds.tags()["MIN_MAPPING_UNIT_RULE"]
    np.testing.assert_array_equal(cleaned, remove_small_regions(raw, 25))
    with open(tmp_path / "mmu_areas.csv") as f:
        counts = {r["class"]: int(r["pixels"]) for r in csv.DictReader(f)}
    assert counts == {name: int((cleaned == i).sum()) for i, name in enumerate(CLASS_NAMES)}
