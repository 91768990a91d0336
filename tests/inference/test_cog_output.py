"""``samsar predict`` writes its class map and confidence raster as Cloud-Optimized GeoTIFFs."""

import json

import numpy as np
import pytest
import rasterio
from predict_helpers import CLASS_COLORS, CLASS_NAMES, TEN_METRES, UTM, speckle_scene, write_geotiff
from test_raster import cog_problems

from samsar.inference.outputs import NODATA_CLASS
from samsar.inference.predict import predict_scene


@pytest.fixture(scope="module")
def predicted(tmp_path_factory, intensity_adapter):
    tmp = tmp_path_factory.mktemp("cog")
    data = speckle_scene(300, 530)  # larger than one 256 px tile: overviews are due
    data[:64, :] = -9999.0
    scene = write_geotiff(tmp / "scene.tif", data, nodata=-9999.0)
    return predict_scene(intensity_adapter, scene, tmp / "out" / "classes.tif", batch_size=8, overlap=0.0,
                         confidence=True, device="cpu")


def test_predicted_class_map_is_a_cog_keeping_nodata_crs_and_colours(predicted):
    assert cog_problems(predicted.class_map) == []
    with rasterio.open(predicted.class_map) as ds:
        assert ds.overviews(1) == [2, 4]
        assert ds.crs == UTM and ds.transform == TEN_METRES and ds.nodata == NODATA_CLASS
        assert ds.colormap(1)[1][:3] == CLASS_COLORS[1]
        classes = ds.read(1)
    with rasterio.open(predicted.class_map, overview_level=0) as ds:
        half = ds.read(1)
    assert (classes[:64] == NODATA_CLASS).all() and (classes[64:] < len(CLASS_NAMES)).all()
    assert (half[:32] == NODATA_CLASS).all() and set(np.unique(half[32:])) <= set(range(len(CLASS_NAMES)))
    assert sorted(p.name for p in predicted.class_map.parent.iterdir()) == sorted(
        p.name for p in [predicted.class_map, predicted.confidence, predicted.preview, predicted.areas])


def test_predicted_confidence_is_a_cog(predicted):
    assert cog_problems(predicted.confidence) == []
    with rasterio.open(predicted.confidence) as ds:
        assert ds.overviews(1) and ds.nodata == 0 and ds.crs == UTM


def test_predicted_class_map_names_its_classes(predicted):
    with rasterio.open(predicted.class_map) as ds:
        assert json.loads(ds.tags().get("CLASS_NAMES", "[]")) == CLASS_NAMES
        assert ds.tags(1).get("CLASS_0") == CLASS_NAMES[0]
