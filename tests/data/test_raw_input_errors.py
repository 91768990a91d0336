"""Bad raw inputs fail early with a DataError naming the file; failures leave no half-written output."""

import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from data_helpers import FUSAR1_CLASSES, make_folder_dataset, rgb_mask, write_params, write_png, write_tiff

from samsar.data.errors import DataError
from samsar.data.prepare import prepare
from samsar.data.preprocess import preprocess


def _folder_params(params_factory, root, **data):
    return params_factory(
        data={"source": "folder", "folder": {"root": str(root), "mask_mode": "rgb"}, **data},
        preprocess={"tile_size": 32, "stride": 32},
    )


@pytest.fixture
def folder(tmp_path):
    return make_folder_dataset(tmp_path / "folder", n=6, size=64)


def _expect_error(params, fragment):
    with pytest.raises(DataError) as err:
        prepare(params)
    assert fragment in str(err.value), str(err.value)
    return str(err.value)


def test_truncated_png_image(folder, params_factory):
    write_png(folder / "images" / "chip_02.png", np.zeros((64, 64), np.uint8))
    (folder / "images" / "chip_02.tif").unlink()
    data = (folder / "images" / "chip_02.png").read_bytes()
    (folder / "images" / "chip_02.png").write_bytes(data[: len(data) // 2])
    message = _expect_error(_folder_params(params_factory, folder), "chip_02.png")
    assert "truncated or corrupt" in message


def test_corrupt_tiff_image(folder, params_factory):
    (folder / "images" / "chip_03.tif").write_bytes(b"II*\x00" + b"\x13" * 200)
    _expect_error(_folder_params(params_factory, folder), "chip_03.tif")


def test_image_and_mask_size_mismatch(folder, params_factory):
    write_png(folder / "masks" / "chip_01.png", rgb_mask(np.zeros((60, 64), np.uint8), FUSAR1_CLASSES))
    message = _expect_error(_folder_params(params_factory, folder), "chip_01.png")
    assert "60x64" in message and "64x64" in message


def test_unknown_mask_colour_names_value_and_count(folder, params_factory):
    mask = rgb_mask(np.zeros((64, 64), np.uint8), FUSAR1_CLASSES)
    mask[:2, :5] = (10, 20, 30)
    write_png(folder / "masks" / "chip_04.png", mask)
    message = _expect_error(_folder_params(params_factory, folder), "chip_04.png")
    assert "(10, 20, 30) (10 px)" in message and "unknown_labels: ignore" in message


def test_unknown_mask_colour_is_ignored_when_asked(folder, params_factory):
    mask = rgb_mask(np.zeros((64, 64), np.uint8), FUSAR1_CLASSES)
    mask[:2, :5] = (10, 20, 30)
    write_png(folder / "masks" / "chip_04.png", mask)
    params = _folder_params(params_factory, folder, unknown_labels="ignore")
    prepare(params)
    manifest = pd.read_parquet(preprocess(params))
    assert manifest.loc[manifest["tile_id"] == "chip_04_r00000_c00000", "count_ignore"].item() == 10


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_in_float_sar(folder, params_factory, bad):
    image = np.ones((64, 64), np.float32)
    image[10, 10] = bad
    write_tiff(folder / "images" / "chip_05.tif", image)
    message = _expect_error(_folder_params(params_factory, folder), "chip_05.tif")
    assert "NaN/Inf" in message


def test_empty_folder(tmp_path, params_factory):
    (tmp_path / "empty" / "images").mkdir(parents=True)
    (tmp_path / "empty" / "masks").mkdir()
    _expect_error(_folder_params(params_factory, tmp_path / "empty"), str(tmp_path / "empty" / "images"))


def test_image_without_mask(folder, params_factory):
    (folder / "masks" / "chip_02.png").unlink()
    message = _expect_error(_folder_params(params_factory, folder), "chip_02.tif")
    assert "without a label" in message


@pytest.mark.parametrize("dtype", [np.complex64, np.int32])
def test_unsupported_image_dtype(folder, params_factory, dtype):
    write_tiff(folder / "images" / "chip_00.tif", np.ones((64, 64), dtype))
    message = _expect_error(_folder_params(params_factory, folder), "chip_00.tif")
    assert "unsupported image dtype" in message


def test_cli_prints_one_red_paragraph_and_exits_1(folder, tmp_path):
    (folder / "masks" / "chip_02.png").unlink()
    params_path = write_params(tmp_path / "cli", data={"source": "folder", "folder": {"root": str(folder)}})
    result = subprocess.run(
        [sys.executable, "-m", "samsar.cli", "prepare", "--params", str(params_path)], capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "chip_02.tif" in result.stderr and "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1


def test_failed_preprocess_leaves_previous_output_untouched(folder, params_factory):
    params = _folder_params(params_factory, folder)
    prepare(params)
    manifest = pd.read_parquet(preprocess(params))
    before = sorted(p.name for p in params.processed_dir.rglob("*"))
    # Corrupt an image of the test split: the scaler (train only) fits, writing the tiles fails midway.
    victim = manifest.loc[manifest["split"] == "test", "source_file"].iloc[-1]
    with open(victim, "r+b") as fh:
        fh.truncate(300)
    with pytest.raises(DataError, match=victim.rsplit("/", 1)[-1]):
        preprocess(params)
    assert sorted(p.name for p in params.processed_dir.rglob("*")) == before
    assert pd.read_parquet(params.processed_dir / "manifest.parquet").equals(manifest)
    leftovers = [p.name for p in params.processed_dir.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_failed_first_preprocess_writes_nothing(folder, params_factory):
    params = _folder_params(params_factory, folder)
    prepare(params)
    manifest = pd.read_parquet(preprocess(params))  # learn which image lands in the test split
    shutil.rmtree(params.processed_dir)
    with open(manifest.loc[manifest["split"] == "test", "source_file"].iloc[-1], "r+b") as fh:
        fh.truncate(300)
    with pytest.raises(DataError):
        preprocess(params)
    assert sorted(p.name for p in params.processed_dir.parent.iterdir()) == ["raw"]
