"""Windowed scene reading and row-band GeoTIFF writing."""

import numpy as np
import pytest
import rasterio
from affine import Affine
from PIL import Image
from rasterio.crs import CRS

from samsar.inference.errors import PredictError
from samsar.inference.outputs import colormap
from samsar.inference.raster import RowWriter, SceneReader

UTM = CRS.from_epsg(32633)
TRANSFORM = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 4600000.0)


def _write_geotiff(path, data, crs=UTM, transform=TRANSFORM, nodata=None):
    bands = data[None] if data.ndim == 2 else data
    with rasterio.open(path, "w", driver="GTiff", height=bands.shape[1], width=bands.shape[2], count=bands.shape[0],
                       dtype=bands.dtype, crs=crs, transform=transform, nodata=nodata) as ds:
        ds.write(bands)


def test_read_block_marks_nodata_and_non_finite_pixels(tmp_path):
    data = np.random.default_rng(0).random((40, 30), dtype=np.float32)
    data[3, 4] = -9999.0
    data[5, 6] = np.nan
    _write_geotiff(tmp_path / "s.tif", data, nodata=-9999.0)
    with SceneReader(tmp_path / "s.tif") as scene:
        raw, valid = scene.read_block(2, 10, 0, 30)
        corner, _ = scene.read_block(30, 40, 20, 30)
    assert raw.shape == (8, 30) and raw.dtype == np.float32
    np.testing.assert_array_equal(raw[2], data[4])
    np.testing.assert_array_equal(corner, data[30:, 20:])
    assert not valid[1, 4] and not valid[3, 6]
    assert valid.sum() == valid.size - 2


def test_multiband_rows_are_channels_last(tmp_path):
    data = np.arange(3 * 6 * 5, dtype=np.uint16).reshape(3, 6, 5)
    _write_geotiff(tmp_path / "m.tif", data)
    with SceneReader(tmp_path / "m.tif") as scene:
        raw, valid = scene.read_block(0, 6, 0, 5)
    assert scene.count == 3 and raw.shape == (6, 5, 3)
    np.testing.assert_array_equal(raw[..., 1], data[1])
    assert valid.all()


def test_pixel_area_only_for_projected_crs(tmp_path):
    data = np.ones((4, 4), np.float32)
    _write_geotiff(tmp_path / "utm.tif", data)
    _write_geotiff(tmp_path / "geo.tif", data, crs=CRS.from_epsg(4326), transform=Affine(0.001, 0, 10, 0, -0.001, 45))
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "plain.png")
    with SceneReader(tmp_path / "utm.tif") as scene:
        assert scene.pixel_area_km2() == pytest.approx(1e-4)
    with SceneReader(tmp_path / "geo.tif") as scene:
        assert scene.pixel_area_km2() is None
    with SceneReader(tmp_path / "plain.png") as scene:
        assert not scene.georeferenced and scene.transform is None and scene.pixel_area_km2() is None


def test_unreadable_and_missing_files_raise_predict_error(tmp_path):
    (tmp_path / "junk.tif").write_bytes(b"not a raster at all")
    with pytest.raises(PredictError, match="junk.tif"):
        SceneReader(tmp_path / "junk.tif")
    with pytest.raises(PredictError, match="absent.tif"):
        SceneReader(tmp_path / "absent.tif")


def test_row_writer_reassembles_irregular_bands_with_georeference_and_colours(tmp_path):
    classes = np.random.default_rng(1).integers(0, 5, size=(300, 500), dtype=np.uint8)
    colors = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 0, 0)]
    path = tmp_path / "c.tif"
    with RowWriter(path, height=300, width=500, dtype="uint8", nodata=255, crs=UTM, transform=TRANSFORM, colormap=colormap(colors)) as w:
        for row0, row1 in [(0, 37), (37, 200), (200, 201), (201, 300)]:
            w.write(classes[row0:row1])
    with rasterio.open(path) as ds:
        np.testing.assert_array_equal(ds.read(1), classes)
        assert ds.crs == UTM and ds.transform == TRANSFORM and ds.nodata == 255
        assert ds.colormap(1)[2] == (0, 0, 255, 255)
        assert ds.profile["tiled"]


def test_row_writer_without_georeference(tmp_path):
    path = tmp_path / "plain.tif"
    with RowWriter(path, height=10, width=12, dtype="uint8", nodata=255, crs=None, transform=None) as w:
        w.write(np.ones((10, 12), np.uint8))
    with SceneReader(path) as scene:
        assert scene.crs is None and not scene.georeferenced
        raw, _ = scene.read_block(0, 10, 0, 12)
    assert (raw == 1).all()
