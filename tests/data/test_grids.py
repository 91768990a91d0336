"""Image/label grids: the same CRS, transform and size, or a label reprojected onto the image grid."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from affine import Affine
from data_helpers import write_params
from PIL import Image
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.warp import calculate_default_transform, reproject
from s1_helpers import ORIGIN, S1_CLASSES, TEN_M, UTM33, class_map, s1_power, write_s1

from samsar.config import load_params
from samsar.data.errors import DataError
from samsar.data.labels import LabelDecoder
from samsar.data.pairs import PairReader
from samsar.data.prepare import prepare
from samsar.data.preprocess import preprocess
from samsar.data.raw_index import RawIndex

SIZE = 256
WGS84 = CRS.from_epsg(4326)


def _params(tmp_path, image, label, **data):
    return load_params(write_params(
        tmp_path / "project",
        data={"source": "scene", "classes": S1_CLASSES, "background": None, "label_offset": 1,
              "scene": {"image": str(image), "label": str(label)}, **data},
        preprocess={"tile_size": 64, "stride": 64, "split": {"val": 0.2, "test": 0.2, "block_size": 64, "seed": 0}},
    ))


def _label_in_wgs84(path, classes):
    """The class map (values 1..3) resampled from the image's UTM 10 m grid to EPSG:4326 at about 20 m."""
    left, top = ORIGIN
    bounds = (left, top - 10 * SIZE, left + 10 * SIZE, top)
    transform, width, height = calculate_default_transform(UTM33, WGS84, SIZE, SIZE, *bounds, resolution=(0.00024, 0.00018))
    out = np.zeros((height, width), np.uint8)
    reproject((classes + 1).astype(np.uint8), out, src_transform=TEN_M, src_crs=UTM33, dst_transform=transform,
              dst_crs=WGS84, resampling=Resampling.nearest)
    return write_s1(path, out, crs=WGS84, transform=transform, descriptions=())


@pytest.fixture
def utm_image(tmp_path):
    classes = class_map(SIZE, SIZE)
    return write_s1(tmp_path / "s1" / "scene.tif", s1_power(classes)), classes


def _classes_on_image_grid(params):
    item = RawIndex.load(params.raw_dir).items[0]
    decoder = LabelDecoder.from_params(params, "index")
    with PairReader(item.image, item.label, decoder) as pair:
        _, valid = pair.read_image(0, 0, SIZE, SIZE)
        return pair.read_classes(0, 0, SIZE, SIZE, valid), item


def test_label_in_wgs84_at_20m_is_refused_naming_both_grids(tmp_path, utm_image):
    image, classes = utm_image
    label = _label_in_wgs84(tmp_path / "s1" / "scene_label.tif", classes)
    with pytest.raises(DataError) as err:
        prepare(_params(tmp_path, image, label))
    message = str(err.value)
    assert str(label) in message and str(image) in message and "\n" not in message
    assert "EPSG:4326" in message and "EPSG:32633" in message and "data.label_grid: reproject" in message
    assert not (tmp_path / "project" / "data" / "raw").exists()


def test_label_in_wgs84_at_20m_is_reprojected_onto_the_utm_grid(tmp_path, utm_image):
    image, classes = utm_image
    label = _label_in_wgs84(tmp_path / "s1" / "scene_label.tif", classes)
    params = _params(tmp_path, image, label, label_grid="reproject")
    prepare(params)
    decoded, item = _classes_on_image_grid(params)
    assert item.label == params.raw_dir / "labels" / "scene.tif" and item.label_source == str(label.resolve())
    # Block centres (16 px from any class edge, wider than the 20 m label pixels) are exact.
    centres = np.arange(16, SIZE, 32)
    assert np.array_equal(decoded[np.ix_(centres, centres)], classes[np.ix_(centres, centres)])
    assert decoded[16, 48] == classes[16, 48] == 2 and decoded[48, 16] == classes[48, 16] == 1
    assert np.mean(decoded == classes) > 0.9  # only pixels along class edges may move by one 20 m cell
    # The tiles carry it through: a known pixel of a preprocessed tile label.
    manifest = pd.read_parquet(preprocess(params))
    tile = manifest[(manifest["row_off"] == 0) & (manifest["col_off"] == 0)].iloc[0]
    assert np.asarray(Image.open(params.processed_dir / tile.label_path))[16, 48] == 2


def test_label_shifted_by_64_pixels_is_refused_with_both_origins(tmp_path, utm_image):
    image, classes = utm_image
    shifted = TEN_M @ Affine.translation(64, 0)
    label = write_s1(tmp_path / "s1" / "scene_label.tif", (classes + 1).astype(np.uint8), transform=shifted, descriptions=())
    with pytest.raises(DataError) as err:
        prepare(_params(tmp_path, image, label))
    message = str(err.value)
    assert "origin (500640, 4.6e+06)" in message and "origin (500000, 4.6e+06)" in message
    assert "label grid" in message and str(label) in message


def test_shifted_label_reprojected_keeps_its_georeference_and_ignores_the_uncovered_part(tmp_path, utm_image):
    image, classes = utm_image
    shifted = TEN_M @ Affine.translation(64, 0)
    label = write_s1(tmp_path / "s1" / "scene_label.tif", (classes + 1).astype(np.uint8), transform=shifted, descriptions=())
    params = _params(tmp_path, image, label, label_grid="reproject")
    prepare(params)
    decoded, item = _classes_on_image_grid(params)
    assert (decoded[:, :64] == 255).all()  # the label does not cover these columns
    assert np.array_equal(decoded[:, 64:], classes[:, : SIZE - 64])  # label pixel (r, c) lies on image pixel (r, c + 64)
    index = json.loads((params.raw_dir / "index.json").read_text())
    assert index["items"][0]["class_counts"]["ignore"] == 64 * SIZE


def test_label_that_does_not_overlap_is_refused_even_with_reproject(tmp_path, utm_image):
    image, classes = utm_image
    far = TEN_M @ Affine.translation(10 * SIZE, 0)
    label = write_s1(tmp_path / "s1" / "scene_label.tif", (classes + 1).astype(np.uint8), transform=far, descriptions=())
    with pytest.raises(DataError, match="does not overlap"):
        prepare(_params(tmp_path, image, label, label_grid="reproject"))


def test_each_pair_may_have_its_own_crs(tmp_path):
    """A folder whose pairs lie in different UTM zones (like the TerraMind tiles) prepares without reprojection."""
    root = tmp_path / "folder"
    for i, epsg in enumerate((32633, 32722, 32616, 32736, 32632)):
        classes = class_map(64, 64, block=16)
        crs = CRS.from_epsg(epsg)
        write_s1(root / "images" / f"t{i}.tif", s1_power(classes, seed=i), crs=crs)
        write_s1(root / "masks" / f"t{i}.tif", (classes + 1).astype(np.uint8), crs=crs, descriptions=())
    params = load_params(write_params(
        tmp_path / "project",
        data={"source": "folder", "classes": S1_CLASSES, "background": None, "label_offset": 1,
              "folder": {"root": str(root), "mask_mode": "index"}},
        preprocess={"tile_size": 64, "stride": 64},
    ))
    prepare(params)
    items = RawIndex.load(params.raw_dir).items
    assert len(items) == 5 and all(item.label_source is None for item in items)
    assert not (params.raw_dir / "labels").exists()
