"""``samsar predict`` end to end on small scenes with an untrained tiny segmenter."""

import csv
import tempfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from PIL import Image
from predict_helpers import (
    CLASS_COLORS, CLASS_NAMES, PAULI_SCALER, SHARED_DATA, TEN_METRES, UTM, make_adapter, speckle_scene, write_geotiff,
)
from typer.testing import CliRunner

from samsar.cli import app
from samsar.data.scaling import SarScaler
from samsar.inference.outputs import NODATA_CLASS
from samsar.inference.predict import PredictError, load_model, output_paths, predict_scene, resolve_model
from samsar.inference.predictor import Predictor


def _outputs_absent(output):
    leftovers = [p.name for p in output.parent.iterdir() if p.name.startswith(f".{output.stem}")]
    return not any(p.exists() for p in output_paths(output).values()) and not leftovers


def test_geotiff_scene_gives_georeferenced_class_map_preview_and_areas(tmp_path, intensity_adapter):
    data = speckle_scene(150, 250)  # not a multiple of the 64 px window or its 48 px stride
    data[:20, :30] = -9999.0
    scene = write_geotiff(tmp_path / "scene.tif", data, nodata=-9999.0)
    result = predict_scene(intensity_adapter, scene, tmp_path / "out" / "classes.tif", batch_size=4, confidence=True, device="cpu")

    with rasterio.open(result.class_map) as ds:
        classes = ds.read(1)
        assert (ds.count, ds.dtypes[0], ds.shape) == (1, "uint8", (150, 250))
        assert ds.crs == UTM and ds.transform == TEN_METRES and ds.nodata == NODATA_CLASS
        assert ds.colormap(1)[2][:3] == CLASS_COLORS[2]
    assert (classes[:20, :30] == NODATA_CLASS).all()
    assert (classes[20:] < len(CLASS_NAMES)).all()

    # Streaming from the file gives the same map as predicting the array in memory.
    segmenter, meta = load_model(intensity_adapter)
    expected = Predictor(segmenter, meta, device="cpu").predict_array(np.where(data == -9999.0, np.nan, data))
    np.testing.assert_array_equal(classes, expected)

    with rasterio.open(result.confidence) as ds:
        confidence = ds.read(1)
    assert (confidence[:20, :30] == 0).all() and (confidence[20:] >= 255 // len(CLASS_NAMES)).all()

    rows = list(csv.DictReader(open(result.areas)))
    counts = {r["class"]: int(r["pixels"]) for r in rows}
    assert counts == {name: int((classes == i).sum()) for i, name in enumerate(CLASS_NAMES)}
    assert sum(counts.values()) == 150 * 250 - 20 * 30
    assert all(float(r["area_km2"]) == pytest.approx(int(r["pixels"]) * 1e-4, abs=1e-6) for r in rows)
    assert result.area_note is None

    preview = np.asarray(Image.open(result.preview))
    assert preview.shape == (150, 250, 4)
    assert (preview[0, 0] == 0).all()  # nodata is transparent


def test_png_scene_is_not_georeferenced_and_areas_are_in_pixels(tmp_path, intensity_adapter):
    Image.fromarray((speckle_scene(90, 130) * 500).clip(0, 255).astype(np.uint8)).save(tmp_path / "scene.png")
    result = predict_scene(str(intensity_adapter), tmp_path / "scene.png", tmp_path / "classes.tif", device="cpu")
    with rasterio.open(result.class_map) as ds:
        assert ds.crs is None and ds.shape == (90, 130)
    assert result.area_note and "pixels" in result.area_note
    assert all(r["area_km2"] == "" for r in csv.DictReader(open(result.areas)))
    assert sum(result.counts.values()) == 90 * 130


def test_unreadable_scene(tmp_path, intensity_adapter):
    (tmp_path / "broken.tif").write_bytes(b"II*\x00garbage")
    with pytest.raises(PredictError, match="broken.tif"):
        predict_scene(intensity_adapter, tmp_path / "broken.tif", tmp_path / "classes.tif", device="cpu")
    assert _outputs_absent(tmp_path / "classes.tif")


def test_wrong_band_count(tmp_path, intensity_adapter):
    scene = write_geotiff(tmp_path / "rgb.tif", np.ones((40, 40, 3), np.float32))
    with pytest.raises(PredictError, match=r"rgb.tif: has 3 band\(s\) but the model was trained on 1-band"):
        predict_scene(intensity_adapter, scene, tmp_path / "classes.tif", device="cpu")
    assert _outputs_absent(tmp_path / "classes.tif")


def test_all_nodata_scene_fails_and_keeps_the_previous_output(tmp_path, intensity_adapter):
    scene = write_geotiff(tmp_path / "empty.tif", np.full((100, 120), -9999.0, np.float32), nodata=-9999.0)
    output = tmp_path / "classes.tif"
    output.write_bytes(b"previous run")
    with pytest.raises(PredictError, match="empty.tif: every pixel is nodata"):
        predict_scene(intensity_adapter, scene, output, device="cpu", overwrite=True)
    assert output.read_bytes() == b"previous run"
    assert not output_paths(output)["preview"].exists() and not output_paths(output)["areas"].exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".classes")]


def test_output_that_is_a_directory_is_refused_and_kept(tmp_path, intensity_adapter):
    scene = write_geotiff(tmp_path / "scene.tif", speckle_scene(40, 40))
    results = tmp_path / "res"
    results.mkdir()
    (results / "keep.txt").write_text("user file")
    for overwrite in (False, True):
        with pytest.raises(PredictError, match=r"res: is a directory; give --output a file path"):
            predict_scene(intensity_adapter, scene, results, device="cpu", overwrite=overwrite)
    assert (results / "keep.txt").read_text() == "user file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["res", "scene.tif"]


def test_output_that_is_the_input_is_refused_and_the_input_kept(tmp_path, intensity_adapter):
    scene = write_geotiff(tmp_path / "scene.tif", speckle_scene(40, 40))
    before = scene.read_bytes()
    with pytest.raises(PredictError, match="scene.tif: is the input scene"):
        predict_scene(intensity_adapter, scene, tmp_path / "." / "scene.tif", device="cpu", overwrite=True)
    assert scene.read_bytes() == before


def test_existing_output_needs_overwrite(tmp_path, intensity_adapter):
    scene = write_geotiff(tmp_path / "scene.tif", speckle_scene(40, 40))
    output = tmp_path / "classes.tif"
    output.write_bytes(b"previous run")
    with pytest.raises(PredictError, match="classes.tif: already exists; pass --overwrite"):
        predict_scene(intensity_adapter, scene, output, device="cpu")
    assert output.read_bytes() == b"previous run"
    assert not output_paths(output)["preview"].exists()
    predict_scene(intensity_adapter, scene, output, device="cpu", overwrite=True)
    with rasterio.open(output) as written:
        assert written.shape == (40, 40)


def test_missing_base_checkpoint(tmp_path):
    checkpoint = tmp_path / "base.pth"
    from samsar.models.sam import build_sam

    sam, _ = build_sam("tiny", 64, seed=3)
    torch.save(sam.state_dict(), checkpoint)
    adapter = make_adapter(tmp_path / "adapter", PAULI_SCALER, 64, checkpoint=checkpoint)
    checkpoint.unlink()
    scene = write_geotiff(tmp_path / "s.tif", np.ones((40, 40, 3), np.uint8))
    with pytest.raises(PredictError, match="base checkpoint .* missing"):
        predict_scene(adapter, scene, tmp_path / "classes.tif", device="cpu")
    assert _outputs_absent(tmp_path / "classes.tif")


def test_model_that_is_not_an_adapter(tmp_path):
    with pytest.raises(PredictError, match="no adapter.json"):
        resolve_model(tmp_path)


def test_cli_predict_writes_outputs_and_reports_bad_input(tmp_path, intensity_adapter):
    scene = write_geotiff(tmp_path / "scene.tif", speckle_scene(70, 90))
    runner = CliRunner()
    ok = runner.invoke(app, ["predict", "--model", str(intensity_adapter), "-i", str(scene), "-o", str(tmp_path / "c.tif"),
                             "--device", "cpu", "--params", str(tmp_path / "none.yaml")])
    assert ok.exit_code == 0, ok.output
    assert all(p.exists() for name, p in output_paths(tmp_path / "c.tif").items() if name != "confidence")
    bad = runner.invoke(app, ["predict", "--model", str(intensity_adapter), "-i", str(tmp_path / "nope.tif"), "-o", str(tmp_path / "d.tif"),
                              "--params", str(tmp_path / "none.yaml")])
    assert bad.exit_code == 1 and "nope.tif" in bad.output
    again = runner.invoke(app, ["predict", "--model", str(intensity_adapter), "-i", str(scene), "-o", str(tmp_path / "c.tif"),
                                "--device", "cpu", "--params", str(tmp_path / "none.yaml")])
    assert again.exit_code == 1 and "c.tif: already exists; pass --overwrite" in again.output
    forced = runner.invoke(app, ["predict", "--model", str(intensity_adapter), "-i", str(scene), "-o", str(tmp_path / "c.tif"),
                                 "--device", "cpu", "--params", str(tmp_path / "none.yaml"), "--overwrite"])
    assert forced.exit_code == 0, forced.output


def test_polsf_pauli_scene(tmp_path):
    scene = SHARED_DATA / "polsf-sf-airsar" / "SF-AIRSAR-Pauli.bmp"
    if not scene.is_file():
        pytest.skip(f"shared PolSF data not found at {scene}")
    adapter = make_adapter(tmp_path / "pauli", PAULI_SCALER, 128)
    result = predict_scene(adapter, scene, tmp_path / "polsf_classes.tif", batch_size=8, overlap=0.0, device="cpu")
    with rasterio.open(result.class_map) as ds:
        assert ds.shape == (900, 1024) and ds.crs is None
        assert (ds.read(1) < len(CLASS_NAMES)).all()
    assert sum(result.counts.values()) == 900 * 1024
    assert np.asarray(Image.open(result.preview)).shape == (900, 1024, 4)


def test_registry_uri_errors_become_predict_errors(tmp_path, monkeypatch):
    from mlflow.exceptions import MlflowException

    import samsar.tracking.pyfunc as pyfunc

    def missing(uri, dst, tracking_uri=None):
        raise MlflowException(f"Registered model alias champion not found ({tracking_uri})")

    monkeypatch.setattr(pyfunc, "download_adapter", missing)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    with pytest.raises(PredictError, match="models:/samsar-x@champion: cannot be loaded from the tracking store "
                                           "http://127.0.0.1:5999 .*alias champion not found"):
        resolve_model("models:/samsar-x@champion", download_dir=tmp_path)


def test_predict_from_a_registered_model(tmp_path, intensity_adapter, monkeypatch):
    """models:/NAME@ALIAS is downloaded from the project's tracking store and predicts like the directory.

    Everything stays under tmp_path: the store, the experiment's artifacts, and nothing goes
    through MLflow's process-wide default store (``sqlite:///mlflow.db`` and ``./mlruns`` in the
    working directory), which the test points at an empty folder and checks stays empty.
    """
    import mlflow
    import yaml

    from samsar.config import load_params
    from samsar.tracking.pyfunc import log_adapter_model
    from samsar.tracking.store import tracking_uri

    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "DVC_ROOT"):
        monkeypatch.delenv(key, raising=False)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({
        "data": {"name": "reg", "classes": [{"name": n, "color": list(c)} for n, c in zip(CLASS_NAMES, CLASS_COLORS)],
                 "background": None},
        "tracking": {"system_metrics": False},
    }))
    params = load_params(tmp_path / "params.yaml")
    uri = tracking_uri(params)
    assert uri.startswith("sqlite:///") and tmp_path.resolve() in Path(uri.removeprefix("sqlite:///")).parents
    client = mlflow.MlflowClient(uri, registry_uri=uri)
    experiment_id = client.create_experiment("samsar-reg", artifact_location=(tmp_path / "artifacts").as_uri())
    run_id = client.create_run(experiment_id).info.run_id
    model_uri = log_adapter_model(params, run_id, intensity_adapter)
    # The logged model's artifact location as the source: a models:/m-... source would be
    # resolved through MLflow's process-wide tracking URI rather than this client's.
    model = client.get_logged_model(model_uri.removeprefix("models:/"))
    assert Path(model.artifact_location.removeprefix("file://")).is_relative_to(tmp_path / "artifacts")
    client.create_registered_model("samsar-reg")
    version = client.create_model_version("samsar-reg", model.artifact_location, run_id=run_id, model_id=model.model_id)
    client.set_registered_model_alias("samsar-reg", "champion", version.version)

    scene = write_geotiff(tmp_path / "scene.tif", speckle_scene(70, 90))
    temp_root = tmp_path / "tmp"
    temp_root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp_root))
    registered = predict_scene("models:/samsar-reg@champion", scene, tmp_path / "reg.tif", device="cpu", params=params)
    assert list(temp_root.iterdir()) == []  # the downloaded model copy is removed
    with pytest.raises(PredictError, match=r"rgb.tif: has 3 band\(s\)"):
        predict_scene("models:/samsar-reg@champion", write_geotiff(tmp_path / "rgb.tif", np.ones((40, 40, 3), np.float32)),
                      tmp_path / "rgb_classes.tif", device="cpu", params=params)
    assert list(temp_root.iterdir()) == []  # also when prediction fails
    local = predict_scene(intensity_adapter, scene, tmp_path / "dir.tif", device="cpu")
    with rasterio.open(registered.class_map) as a, rasterio.open(local.class_map) as b:
        np.testing.assert_array_equal(a.read(1), b.read(1))
    assert list(cwd.iterdir()) == []  # no default store (mlflow.db, mlruns/) was created


def test_a_pixel_masked_in_one_used_band_is_nodata(tmp_path):
    """As in preprocess: nodata in any used band (here VV at the file's nodata, VH valid) makes the
    pixel nodata; GDAL's dataset mask alone would call it valid and classify a -9999 dB value."""
    scaler = SarScaler(input_kind="db", to_db=False, low=(-25.0, -30.0), high=(0.0, -5.0))
    adapter = make_adapter(tmp_path / "dual", scaler, 64)
    vv = np.full((70, 90), -12.0, np.float32)
    vh = np.full((70, 90), -19.0, np.float32)
    vv[:, :10] = -9999.0  # VV has no data in the first ten columns; VH does
    scene = write_geotiff(tmp_path / "s1.tif", np.stack([vv, vh], axis=-1), nodata=-9999.0)
    predict_scene(adapter, scene, tmp_path / "classes.tif", device="cpu")
    with rasterio.open(tmp_path / "classes.tif") as ds:
        classes = ds.read(1)
    assert (classes[:, :10] == 255).all() and (classes[:, 10:] != 255).all()
