"""``samsar predict`` on a folder or a list of scenes: per-scene COGs, resume by skipping, mosaic and area table."""

import csv
import json
import shutil

import numpy as np
import pytest
import rasterio
from affine import Affine
from predict_helpers import CLASS_NAMES, INTENSITY_SCALER, UTM, make_adapter, speckle_scene, write_geotiff
from rasterio.crs import CRS
from typer.testing import CliRunner

from samsar.cli import app
from samsar.inference.batch import BatchError, list_scenes, map_scenes, write_vrt
from samsar.inference.outputs import NODATA_CLASS


def _scenes(folder, n=3, size=64):
    """``n`` scenes side by side (64 px of 10 m each, 640 m apart) in UTM 33N."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        transform = Affine(10.0, 0.0, 500000.0 + i * size * 10.0, 0.0, -10.0, 4600000.0)
        write_geotiff(folder / f"s{i}.tif", speckle_scene(size, size, seed=i), transform=transform)
    return folder


def _predict(*args):
    result = CliRunner().invoke(app, ["predict", *map(str, args), "--device", "cpu", "--batch-size", "4"])
    return result


def _mtimes(folder):
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir() if p.name.startswith("s")}


def test_folder_maps_every_scene_then_a_rerun_skips_them(tmp_path, intensity_adapter):
    scenes, out = _scenes(tmp_path / "scenes"), tmp_path / "out"
    first = _predict("--model", intensity_adapter, "--input", scenes, "--output", out)
    assert first.exit_code == 0, first.output
    assert "3 scene(s) mapped, 0 skipped" in first.stdout
    progress = [line for line in first.stderr.splitlines() if line.startswith("scene ")]
    assert [line.split(":")[0] for line in progress] == ["scene 1/3 mapped", "scene 2/3 mapped", "scene 3/3 mapped"]
    assert "2 to go, ETA" in progress[0] and "0 to go, ETA 0 s" in progress[2]

    class_maps = {}
    for i in range(3):
        with rasterio.open(out / f"s{i}.tif") as ds:
            assert ds.crs == UTM and ds.shape == (64, 64) and ds.nodata == NODATA_CLASS
            assert ds.overviews(1) is not None and ds.profile["tiled"]  # COG layout
            class_maps[i] = ds.read(1)
        record = json.loads((out / f"s{i}.samsar.json").read_text())
        assert record["model"] == str(intensity_adapter) and len(record["model_sha256"]) == 64
        assert record["input_sha256"] and record["pixel_area_m2"] == pytest.approx(100.0)

    # The mosaic places the three maps side by side at their georeference.
    with rasterio.open(out / "mosaic.vrt") as ds:
        assert ds.crs == UTM and ds.shape == (64, 192) and ds.transform.c == 500000.0 and ds.nodata == NODATA_CLASS
        mosaic = ds.read(1)
        assert ds.colormap(1)[0][:3] == (0, 0, 255)
    np.testing.assert_array_equal(mosaic, np.concatenate([class_maps[0], class_maps[1], class_maps[2]], axis=1))

    rows = list(csv.DictReader(open(out / "areas.csv")))
    assert [r["scene"] for r in rows] == ["s0"] * 3 + ["s1"] * 3 + ["s2"] * 3 + ["total"] * 3
    for r in rows[:9]:
        i = int(r["scene"][1])
        assert int(r["pixels"]) == int((class_maps[i] == int(r["class_index"])).sum())
    for index, name in enumerate(CLASS_NAMES):
        total = rows[9 + index]
        assert total["class"] == name
        assert int(total["pixels"]) == sum(int((m == index).sum()) for m in class_maps.values())
        assert float(total["area_m2"]) == pytest.approx(int(total["pixels"]) * 100.0)
        assert float(total["area_km2"]) == pytest.approx(int(total["pixels"]) * 1e-4)
    assert sum(int(r["pixels"]) for r in rows[9:]) == 3 * 64 * 64

    before = _mtimes(out)
    again = _predict("--model", intensity_adapter, "--input", scenes, "--output", out)
    assert again.exit_code == 0, again.output
    assert "0 scene(s) mapped, 3 skipped" in again.stdout
    assert again.stderr.count("skipped: ") == 3 and "scene 3/3 skipped: s2.tif" in again.stderr
    assert _mtimes(out) == before  # nothing rewritten


def test_a_list_resumes_where_a_batch_stopped_and_a_changed_model_needs_overwrite(tmp_path, intensity_adapter):
    scenes, out = _scenes(tmp_path / "scenes"), tmp_path / "out"
    listing = tmp_path / "scenes.txt"
    listing.write_text("# three scenes\nscenes/s0.tif\n\n" + f"{scenes / 's1.tif'}\nscenes/s2.tif\n")
    assert _predict("--model", intensity_adapter, "--input", listing, "--output", out).exit_code == 0
    (out / "s1.tif").unlink()  # as if the batch stopped before s1 finished: no class map, stale record
    (out / "s1.samsar.json").unlink()
    for name in ("s1_preview.png", "s1_areas.csv"):
        (out / name).unlink()
    before = _mtimes(out)
    resumed = _predict("--model", intensity_adapter, "--input", listing, "--output", out)
    assert resumed.exit_code == 0, resumed.output
    assert "1 scene(s) mapped, 2 skipped" in resumed.stdout
    after = _mtimes(out)
    assert {k: v for k, v in after.items() if not k.startswith("s1")} == {k: v for k, v in before.items() if not k.startswith("s1")}
    assert (out / "s1.tif").is_file()

    other = make_adapter(tmp_path / "other", INTENSITY_SCALER, 64, variant="lora")  # another model
    refused = _predict("--model", other, "--input", listing, "--output", out)
    assert refused.exit_code == 1
    message = refused.stderr.strip()
    assert len(message.splitlines()) == 1
    assert message.startswith(f"error: {scenes / 's0.tif'}: ") and "another model" in message and "--overwrite" in message
    assert _mtimes(out) == after

    replaced = _predict("--model", other, "--input", listing, "--output", out, "--overwrite")
    assert replaced.exit_code == 0, replaced.output
    assert "3 scene(s) mapped, 0 skipped" in replaced.stdout
    assert json.loads((out / "s0.samsar.json").read_text())["model"] == str(other)


def test_output_without_record_is_never_replaced_silently(tmp_path, intensity_adapter):
    scenes, out = _scenes(tmp_path / "scenes", n=2), tmp_path / "out"
    out.mkdir()
    (out / "s1.tif").write_bytes(b"the user's own file")
    refused = _predict("--model", intensity_adapter, "--input", scenes, "--output", out)
    assert refused.exit_code == 1 and "s1.tif" in refused.stderr and "--overwrite" in refused.stderr
    assert sorted(p.name for p in out.iterdir()) == ["s1.tif"]  # checked before any scene ran


def test_changed_settings_or_input_are_not_skipped(tmp_path, intensity_adapter):
    scenes, out = _scenes(tmp_path / "scenes", n=1), tmp_path / "out"
    map_scenes(intensity_adapter, scenes, out, device="cpu", report=lambda line: None)
    with pytest.raises(BatchError, match="other settings"):
        map_scenes(intensity_adapter, scenes, out, device="cpu", overlap=0.5, report=lambda line: None)
    write_geotiff(scenes / "s0.tif", speckle_scene(64, 64, seed=9))
    with pytest.raises(BatchError, match="scene changed"):
        map_scenes(intensity_adapter, scenes, out, device="cpu", report=lambda line: None)
    # Same bytes, new mtime (a copy): still done.
    shutil.copy(scenes / "s0.tif", tmp_path / "copy.tif")
    assert map_scenes(intensity_adapter, scenes, out, device="cpu", overwrite=True, report=lambda line: None).mapped
    (scenes / "s0.tif").unlink()
    shutil.copy(tmp_path / "copy.tif", scenes / "s0.tif")
    assert map_scenes(intensity_adapter, scenes, out, device="cpu", report=lambda line: None).skipped == [(scenes / "s0.tif").resolve()]


def test_inputs_and_outputs_that_are_refused(tmp_path, intensity_adapter):
    scenes = _scenes(tmp_path / "scenes", n=2)
    for output in (scenes, scenes / "classes"):
        result = _predict("--model", intensity_adapter, "--input", scenes, "--output", output)
        assert result.exit_code == 1 and "input folder" in result.stderr
    assert sorted(p.name for p in scenes.iterdir()) == ["s0.tif", "s1.tif"]

    write_geotiff(scenes / "s2.tif", speckle_scene(64, 64), crs=CRS.from_epsg(32632))
    result = _predict("--model", intensity_adapter, "--input", scenes, "--output", tmp_path / "out")
    assert result.exit_code == 1 and "s2.tif" in result.stderr and "own output folder" in result.stderr
    assert not (tmp_path / "out").exists()

    (tmp_path / "empty").mkdir()
    with pytest.raises(BatchError, match="no GeoTIFF"):
        list_scenes(tmp_path / "empty")
    (tmp_path / "bad.txt").write_text("scenes/s0.tif\nscenes/missing.tif\n")
    with pytest.raises(BatchError, match=r"bad.txt:2: scenes/missing.tif not found"):
        list_scenes(tmp_path / "bad.txt")
    (tmp_path / "twice").mkdir()
    shutil.copy(scenes / "s0.tif", tmp_path / "twice" / "s0.tif")
    (tmp_path / "dup.txt").write_text("scenes/s0.tif\ntwice/s0.tif\n")
    with pytest.raises(BatchError, match="file name"):
        list_scenes(tmp_path / "dup.txt")


def test_vrt_of_scenes_with_different_pixel_sizes(tmp_path):
    fine = write_geotiff(tmp_path / "fine.tif", np.full((20, 20), 1, np.uint8), transform=Affine(10, 0, 0, 0, -10, 200), nodata=255)
    coarse = write_geotiff(tmp_path / "coarse.tif", np.full((10, 10), 2, np.uint8), transform=Affine(20, 0, 200, 0, -20, 200), nodata=255)
    write_vrt([fine, coarse], tmp_path / "mosaic.vrt")
    with rasterio.open(tmp_path / "mosaic.vrt") as ds:
        assert ds.res == (10.0, 10.0) and ds.shape == (20, 40)
        data = ds.read(1)
    assert (data[:, :20] == 1).all() and (data[:, 20:] == 2).all()
