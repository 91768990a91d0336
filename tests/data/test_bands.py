"""Band selection and SAM channel composition: parsed, applied, stored with the scaler, reused as stored."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from data_helpers import write_params
from s1_helpers import S1_CLASSES, class_map, s1_power, write_s1

from samsar.config import load_params
from samsar.data.bands import compose, parse_channel, resolve_bands
from samsar.data.errors import DataError
from samsar.data.prepare import prepare
from samsar.data.preprocess import preprocess
from samsar.data.scaling import SarScaler


def test_channel_expressions():
    assert parse_channel("VV").bands == ("VV",) and parse_channel("VV").op is None
    assert parse_channel(" VV - VH ").bands == ("VV", "VH") and parse_channel("VV/VH").op == "/"
    for bad in ("VV*VH", "VV-", "1VV", "VV-VH-HH", ""):
        with pytest.raises(ValueError, match="A-B"):
            parse_channel(bad)


def test_compose_difference_and_ratio_in_db_and_linear():
    values = np.array([[[-10.0, -17.0]]], np.float32)
    out = compose(values, ["VV", "VH"], ["VV", "VH", "VV-VH"], db=True)
    assert out[0, 0].tolist() == [-10.0, -17.0, 7.0]
    assert compose(values, ["VV", "VH"], ["VV/VH", "VH", "VH"], db=True)[0, 0, 0] == 7.0  # a ratio is a dB difference
    linear = np.array([[[0.2, 0.05]]], np.float32)
    assert compose(linear, ["VV", "VH"], ["VV/VH", "VV-VH", "VV"], db=False)[0, 0].tolist() == pytest.approx([4.0, 0.15, 0.2])


def test_resolve_bands_by_index_and_description(tmp_path):
    path = Path("s1.tif")
    assert resolve_bands(None, ("a", "b"), 2, path) == (0, 1)
    assert resolve_bands({"VV": 2, "VH": 1}, (None, None), 2, path) == (1, 0)
    assert resolve_bands(["VH", "VV"], ("VV", "VH", "angle"), 3, path) == (1, 0)
    with pytest.raises(DataError, match=r"s1\.tif: data.bands asks for band 3 but the file has 2"):
        resolve_bands([1, 3], ("VV", "VH"), 2, path)
    with pytest.raises(DataError, match=r"s1\.tif: 2 bands described 'bands'.*1-based index"):
        resolve_bands(["bands"], ("bands", "bands"), 2, path)  # like the TerraMind tiles
    with pytest.raises(DataError, match="no band described 'HH'"):
        resolve_bands(["HH"], ("VV", "VH"), 2, path)


def test_composed_scaler_fits_each_channel_and_round_trips_through_json():
    power = s1_power(class_map(64, 64))
    scaler = SarScaler("intensity", bands=(0, 1), band_names=("VV", "VH"), file_bands=2,
                       compose=("VV", "VH", "VV-VH"), nodata=(float("nan"), -9999.0)).fit([power])
    assert scaler.channels == 2 and scaler.input_bands == 2 and len(scaler.low) == 3
    db = 10 * np.log10(power)
    assert scaler.high[2] == pytest.approx(float(np.percentile(db[..., 0] - db[..., 1], 99)), rel=1e-4)
    doc = json.loads(json.dumps(scaler.to_dict()))
    assert doc["nodata"] == ["nan", -9999.0]  # strict JSON: NaN is written as a string
    again = SarScaler.from_dict(doc)
    assert again.compose == scaler.compose and again.low == scaler.low and np.isnan(again.nodata[0])
    out = again.transform(power)
    assert out.shape == (3, 64, 64) and np.array_equal(out, scaler.transform(power))
    assert not np.array_equal(out[2], (out[0] + out[1]) / 2)  # the third channel is VV-VH, not the legacy mean
    with pytest.raises(ValueError, match="2"):
        again.transform(power[..., :1])


def test_legacy_scaler_dict_without_band_fields_loads_and_scales_as_before():
    legacy = {"input_kind": "intensity", "to_db": True, "percentiles": [1.0, 99.0], "low": [-20.0, -27.0], "high": [0.0, -7.0]}
    scaler = SarScaler.from_dict(legacy)
    raw = s1_power(class_map(8, 8))
    out = scaler.transform(raw)
    assert scaler.input_bands == 2 and np.allclose(out[2], (out[0] + out[1]) / 2)


def test_bands_selected_by_description_from_a_four_band_file_end_to_end(tmp_path):
    classes = class_map(128, 128)
    power = s1_power(classes)
    extra = np.stack([np.full((128, 128), 30.0, np.float32), np.full((128, 128), -3.0, np.float32)], axis=-1)
    # Bands stored as (angle, VH, dem, VV): the order of data.bands, not of the file, is what the model sees.
    stored = np.stack([extra[..., 0], power[..., 1], extra[..., 1], power[..., 0]], axis=-1)
    image = write_s1(tmp_path / "s1" / "four.tif", stored, descriptions=("angle", "VH", "dem", "VV"))
    label = write_s1(tmp_path / "s1" / "four_label.tif", (classes + 1).astype(np.uint8), descriptions=())
    params = load_params(write_params(
        tmp_path / "project",
        data={"source": "scene", "classes": S1_CLASSES, "background": None, "label_offset": 1,
              "scene": {"image": str(image), "label": str(label)}, "bands": ["VV", "VH"]},
        preprocess={"input_kind": "power", "compose": ["VV", "VH", "VV/VH"], "tile_size": 64, "stride": 64,
                    "clip_percentiles": [0.0, 100.0], "split": {"val": 0.2, "test": 0.2, "block_size": 64, "seed": 0}},
    ))
    prepare(params)
    preprocess(params)
    scaling = json.loads((params.processed_dir / "dataset.json").read_text())["scaling"]
    assert scaling["bands"] == [3, 1] and scaling["band_names"] == ["VV", "VH"] and scaling["file_bands"] == 4
    scaler = SarScaler.from_dict(scaling)
    direct = scaler.transform(stored)
    db = 10 * np.log10(power)
    ratio = (db[..., 0] - db[..., 1] - scaler.low[2]) / (scaler.high[2] - scaler.low[2])
    assert np.allclose(direct[2], np.clip(ratio, 0, 1), atol=1e-5)


def test_four_band_file_without_band_selection_is_refused(tmp_path):
    classes = class_map(64, 64)
    image = write_s1(tmp_path / "s1" / "four.tif", np.ones((64, 64, 4), np.float32), descriptions=())
    label = write_s1(tmp_path / "s1" / "four_label.tif", (classes + 1).astype(np.uint8), descriptions=())
    params = load_params(write_params(
        tmp_path / "project",
        data={"source": "scene", "classes": S1_CLASSES, "background": None, "label_offset": 1,
              "scene": {"image": str(image), "label": str(label)}},
    ))
    with pytest.raises(DataError, match="4 channels.*data.bands"):
        prepare(params)
