"""Windowed scene reading and row-band GeoTIFF writing."""

import json

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


def cog_problems(path) -> list[str]:
    """What keeps ``path`` from being a Cloud-Optimized GeoTIFF as GDAL writes and reports one."""
    problems = []
    with open(path, "rb") as f:
        head = f.read(1024)
    if b"LAYOUT=IFDS_BEFORE_DATA" not in head or b"BLOCK_ORDER=ROW_MAJOR" not in head:
        problems.append("no COG ghost header (IFDs before data, row-major blocks)")
    with rasterio.open(path) as ds:
        if ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") != "COG":
            problems.append(f"GDAL layout {ds.tags(ns='IMAGE_STRUCTURE').get('LAYOUT')!r}, not COG")
        if not ds.profile.get("tiled") or ds.block_shapes[0] != (256, 256):
            problems.append(f"blocks {ds.block_shapes[0]}, not 256x256 tiles")
        if ds.compression is None:
            problems.append("not compressed")
        if max(ds.shape) > 256 and not ds.overviews(1):
            problems.append("no overviews")
    return problems


def test_row_writer_writes_a_cloud_optimized_geotiff_with_class_names(tmp_path):
    """COG layout, internal overviews resampled by mode (a class map), and nodata, CRS, colour
    table and class names carried into the final file; no staging file is left behind."""
    classes = np.ones((600, 800), np.uint8)
    classes[0::2, 0::2] = 2  # one pixel in four: nearest resampling would give 2, mode gives 1
    classes[:40, :] = 255
    colors = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    path = tmp_path / "c.tif"
    with RowWriter(path, height=600, width=800, dtype="uint8", nodata=255, crs=UTM, transform=TRANSFORM,
                   colormap=colormap(colors), class_names=["water", "land", "urban"]) as w:
        for row0 in range(0, 600, 70):
            w.write(classes[row0 : row0 + 70])
    assert cog_problems(path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.tif"]  # no staging or overview temp files, no .aux.xml
    with rasterio.open(path) as ds:
        np.testing.assert_array_equal(ds.read(1), classes)
        assert ds.overviews(1) == [2, 4]
        assert ds.crs == UTM and ds.transform == TRANSFORM and ds.nodata == 255
        assert ds.colormap(1)[2] == (0, 0, 255, 255)
        assert json.loads(ds.tags()["CLASS_NAMES"]) == ["water", "land", "urban"]
        assert ds.tags(1)["CLASS_2"] == "urban" and ds.descriptions == ("class",)
    with rasterio.open(path, overview_level=0) as ds:
        half = ds.read(1)
    assert half.shape == (300, 400)
    assert (half[:20] == 255).all() and (half[20:] == 1).all()  # nodata kept, classes by majority


def test_row_writer_overviews_of_a_continuous_raster_average_valid_pixels(tmp_path):
    values = np.full((512, 512), 200, np.uint8)
    values[:, 1::2] = 100
    values[:, :64] = 0  # nodata
    path = tmp_path / "conf.tif"
    with RowWriter(path, height=512, width=512, dtype="uint8", nodata=0, crs=UTM, transform=TRANSFORM) as w:
        w.write(values)
    assert cog_problems(path) == []
    with rasterio.open(path, overview_level=0) as ds:
        half = ds.read(1)
    assert (half[:, :32] == 0).all() and (half[:, 32:] == 150).all()


def test_row_writer_leaves_nothing_when_the_rows_fail(tmp_path):
    path = tmp_path / "c.tif"
    with pytest.raises(RuntimeError, match="model failed"):
        with RowWriter(path, height=300, width=300, dtype="uint8", nodata=255, crs=UTM, transform=TRANSFORM) as w:
            w.write(np.zeros((100, 300), np.uint8))
            raise RuntimeError("model failed")
    assert list(tmp_path.iterdir()) == []


def test_row_writer_reports_a_failed_cog_copy_as_an_incomplete_write(tmp_path, monkeypatch):
    """GDAL failing while it lays out the COG (a full disk) is the one-line I/O error, naming the output."""
    from rasterio._err import CPLE_AppDefinedError

    from samsar.inference import raster

    def disk_full(*args, **kwargs):
        raise CPLE_AppDefinedError(1, 4, "TIFFWriteDirectoryTagData:IO error writing tag data")  # as on a real full disk

    monkeypatch.setattr(raster.rasterio.shutil, "copy", disk_full)
    path = tmp_path / "c.tif"
    with pytest.raises(OSError, match="written incompletely") as caught:
        with RowWriter(path, height=300, width=300, dtype="uint8", nodata=255, crs=UTM, transform=TRANSFORM) as w:
            w.write(np.zeros((300, 300), np.uint8))
    assert caught.value.filename == str(path)
    assert list(tmp_path.iterdir()) == []
