"""Preview, class counts and area table accumulated band by band."""

import csv

import numpy as np
from PIL import Image

from samsar.inference.outputs import NODATA_CLASS, ClassCounter, PreviewSampler, write_area_table

COLORS = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]


def test_preview_of_bands_equals_strided_full_map(tmp_path):
    classes = np.random.default_rng(0).integers(0, 3, size=(250, 333), dtype=np.uint8)
    classes[:10, :10] = NODATA_CLASS
    sampler = PreviewSampler(250, 333, max_side=100)
    for row0, row1 in [(0, 7), (7, 100), (100, 101), (101, 250)]:
        sampler.add(row0, classes[row0:row1])
    sampler.write_png(tmp_path / "p.png", COLORS)
    preview = np.asarray(Image.open(tmp_path / "p.png"))
    expected = classes[:: sampler.step, :: sampler.step]
    assert sampler.step == 4 and preview.shape == (*expected.shape, 4)
    np.testing.assert_array_equal(preview[..., 2][expected == 2], 255)
    assert (preview[..., 3][expected == NODATA_CLASS] == 0).all() and (preview[..., 3][expected != NODATA_CLASS] == 255).all()


def test_counts_skip_nodata_and_area_table_uses_pixel_area(tmp_path):
    counter = ClassCounter(3)
    counter.add(np.array([[0, 0, 2], [NODATA_CLASS, 2, 2]], np.uint8))
    assert counter.counts.tolist() == [2, 0, 3] and counter.total == 5
    write_area_table(tmp_path / "a.csv", ["a", "b", "c"], counter.counts, 1e-4)
    write_area_table(tmp_path / "px.csv", ["a", "b", "c"], counter.counts, None)
    rows = list(csv.DictReader(open(tmp_path / "a.csv")))
    assert [r["class"] for r in rows] == ["a", "b", "c"]
    assert float(rows[2]["area_km2"]) == 3e-4 and float(rows[2]["fraction"]) == 0.6
    assert all(r["area_km2"] == "" for r in csv.DictReader(open(tmp_path / "px.csv")))


def test_preview_keeps_its_own_copy_of_each_band(tmp_path):
    """Bands are released after use (a view would keep every band of the scene alive)."""
    band = np.zeros((8, 8), np.uint8)
    sampler = PreviewSampler(8, 8, max_side=4)
    sampler.add(0, band)
    band[:] = 2
    sampler.write_png(tmp_path / "p.png", COLORS)
    assert (np.asarray(Image.open(tmp_path / "p.png"))[..., 0] == 255).all()  # class 0 is red
