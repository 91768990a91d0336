"""``samsar predict --boxes``: box prompts from GeoJSON or CSV for a box_prompt model."""

import json

import numpy as np
import pytest
import rasterio
import torch
from predict_helpers import INTENSITY_SCALER, TEN_METRES, UTM, speckle_scene, write_geotiff
from rasterio.warp import transform_geom
from typer.testing import CliRunner

from samsar.cli import app
from samsar.inference.boxes import read_boxes, window_boxes
from samsar.inference.predict import PredictError, predict_scene
from samsar.models.artifacts import save_adapter
from samsar.models.box_prompt import BoxPromptDecoder
from samsar.models.variants import build_segmenter


@pytest.fixture(scope="module")
def ship_adapter(tmp_path_factory):
    """Untrained tiny decoder_only-box adapter: 64 px windows, background/ship, single-band intensity."""
    segmenter = build_segmenter("decoder_only-box", backbone="tiny", image_size=64, num_classes=2)
    meta = {"class_names": ["background", "ship"], "class_colors": [[0, 0, 0], [0, 255, 0]],
            "scaling": INTENSITY_SCALER.to_dict()}
    return save_adapter(segmenter, tmp_path_factory.mktemp("adapters") / "ship", meta)


def test_csv_boxes_reach_the_windows_they_intersect(tmp_path, ship_adapter, monkeypatch):
    scene = write_geotiff(tmp_path / "scene.tif", speckle_scene(64, 160))  # windows at columns 0, 48, 96
    boxes = tmp_path / "boxes.csv"
    boxes.write_text("id,x0,y0,x1,y1\nship1,40,5,60,30\n")
    received = []
    forward = BoxPromptDecoder.forward

    def spy(self, *args, boxes=None, **kwargs):
        received.extend(b.tolist() for b in boxes)
        return forward(self, *args, boxes=boxes, **kwargs)

    monkeypatch.setattr(BoxPromptDecoder, "forward", spy)
    result = CliRunner().invoke(app, ["predict", "--model", str(ship_adapter), "-i", str(scene), "-o", str(tmp_path / "c.tif"),
                                      "--device", "cpu", "--params", str(tmp_path / "none.yaml"), "--boxes", str(boxes)])
    assert result.exit_code == 0, result.output
    # window (0, 0) gets the box as is, window (0, 48) its clipped, shifted part, window (0, 96) none
    assert received == [[[40.0, 5.0, 60.0, 30.0]], [[0.0, 5.0, 12.0, 30.0]], []]
    with rasterio.open(tmp_path / "c.tif") as ds:
        classes = ds.read(1)
    assert (classes[:, 112:] == 0).all()  # only the box-free window covers these columns: background


def test_box_model_without_boxes_is_a_one_line_error_naming_the_fix(tmp_path, ship_adapter):
    scene = write_geotiff(tmp_path / "scene.tif", speckle_scene(64, 64))
    with pytest.raises(PredictError, match="box_prompt head.*pass --boxes FILE") as err:
        predict_scene(ship_adapter, scene, tmp_path / "c.tif", device="cpu")
    assert "\n" not in str(err.value) and not (tmp_path / "c.tif").exists()


def test_classwise_model_refuses_boxes(tmp_path, intensity_adapter):
    scene = write_geotiff(tmp_path / "scene.tif", speckle_scene(64, 64))
    boxes = tmp_path / "boxes.csv"
    boxes.write_text("x0,y0,x1,y1\n1,1,5,5\n")
    with pytest.raises(PredictError, match="classwise head, which takes no boxes; drop --boxes"):
        predict_scene(intensity_adapter, scene, tmp_path / "c.tif", device="cpu", boxes=boxes)


def test_scene_without_boxes_in_the_file_is_all_background(tmp_path, ship_adapter):
    scene = write_geotiff(tmp_path / "scene.tif", speckle_scene(64, 100))
    boxes = tmp_path / "boxes.csv"
    boxes.write_text("x0,y0,x1,y1\n500,500,510,510\n")  # outside the scene: dropped
    result = predict_scene(ship_adapter, scene, tmp_path / "c.tif", device="cpu", boxes=boxes)
    assert result.counts == {"background": 64 * 100, "ship": 0}


def _geojson(path, geometries, crs=None):
    doc = {"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {}, "geometry": g} for g in geometries]}
    if crs is not None:
        doc["crs"] = {"type": "name", "properties": {"name": crs}}
    path.write_text(json.dumps(doc))
    return path


SHIP = {"type": "Polygon", "coordinates": [[[500400, 4599800], [500600, 4599800], [500600, 4599700],
                                            [500400, 4599700], [500400, 4599800]]]}  # cols 40-59, rows 20-29
POINT = {"type": "Point", "coordinates": [500105, 4599895]}  # inside pixel (10, 10)


def test_geojson_in_the_scene_crs_becomes_pixel_boxes(tmp_path):
    boxes = read_boxes(_geojson(tmp_path / "b.geojson", [SHIP, POINT]), 100, 100, crs=UTM, transform=TEN_METRES)
    assert boxes.tolist() == [[40, 20, 59, 29], [10, 10, 10, 10]]


def test_geojson_in_another_crs_is_transformed(tmp_path):
    wgs84 = [transform_geom(UTM, "EPSG:4326", g) for g in (SHIP, POINT)]
    boxes = read_boxes(_geojson(tmp_path / "b.geojson", wgs84, crs="EPSG:4326"), 100, 100, crs=UTM, transform=TEN_METRES)
    assert np.abs(boxes - np.array([[40, 20, 59, 29], [10, 10, 10, 10]])).max() <= 1
    with pytest.raises(PredictError, match="the scene has no CRS"):
        read_boxes(_geojson(tmp_path / "c.geojson", wgs84, crs="EPSG:4326"), 100, 100)


def test_bad_box_files_are_one_line_errors(tmp_path):
    headless = tmp_path / "a.csv"
    headless.write_text("1,2,3,4\n")
    with pytest.raises(PredictError, match="a.csv: CSV header .* lacks"):
        read_boxes(headless, 10, 10)
    inverted = tmp_path / "b.csv"
    inverted.write_text("x0,y0,x1,y1\n5,5,1,8\n")
    with pytest.raises(PredictError, match="b.csv: line 2"):
        read_boxes(inverted, 10, 10)
    broken = tmp_path / "c.geojson"
    broken.write_text("{")
    with pytest.raises(PredictError, match="c.geojson: not valid GeoJSON"):
        read_boxes(broken, 10, 10)


def test_window_boxes_clip_and_translate():
    boxes = np.array([[40, 5, 60, 30], [0, 0, 3, 3], [100, 100, 120, 130]], dtype=np.float32)
    assert window_boxes(boxes, 0, 48, 64).tolist() == [[0.0, 5.0, 12.0, 30.0]]
    assert window_boxes(boxes, 96, 96, 64).tolist() == [[4.0, 4.0, 24.0, 34.0]]
    assert window_boxes(boxes, 0, 200, 64).shape == torch.Size([0, 4])


def _two_scenes(folder):
    """Two 64 px scenes side by side in UTM 33N (the second 640 m east of the first)."""
    from affine import Affine

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(2):
        transform = Affine(10.0, 0.0, 500000.0 + i * 640.0, 0.0, -10.0, 4600000.0)
        write_geotiff(folder / f"s{i}.tif", speckle_scene(64, 64, seed=i), transform=transform)
    return folder


def test_batch_boxes_must_be_geojson_and_an_edited_file_is_mapped_again(tmp_path, ship_adapter):
    from samsar.inference.batch import BatchError, map_scenes

    scenes, out = _two_scenes(tmp_path / "scenes"), tmp_path / "out"
    csv_boxes = tmp_path / "boxes.csv"
    csv_boxes.write_text("x0,y0,x1,y1\n40,20,59,29\n")
    result = CliRunner().invoke(app, ["predict", "--model", str(ship_adapter), "-i", str(scenes), "-o", str(out),
                                      "--device", "cpu", "--params", str(tmp_path / "none.yaml"), "--boxes", str(csv_boxes)])
    assert result.exit_code == 1 and "pass a GeoJSON" in result.output and "boxes.csv" in result.output
    assert result.output.strip().count("\n") == 0 and not out.exists()  # refused before any scene ran

    boxes = _geojson(tmp_path / "boxes.geojson", [SHIP])  # in scene s0 only
    quiet = {"device": "cpu", "report": lambda line: None, "boxes": boxes}
    first = map_scenes(ship_adapter, scenes, out, **quiet)
    assert len(first.mapped) == 2
    record = json.loads((out / "s0.samsar.json").read_text())
    assert record["settings"]["boxes_sha256"] and record["settings"]["boxes"] == str(boxes)
    assert len(map_scenes(ship_adapter, scenes, out, **quiet).skipped) == 2  # same file: done
    _geojson(boxes, [SHIP, POINT])  # edited in place: same path, other boxes
    with pytest.raises(BatchError, match="other settings"):
        map_scenes(ship_adapter, scenes, out, **quiet)
    assert len(map_scenes(ship_adapter, scenes, out, overwrite=True, **quiet).mapped) == 2
