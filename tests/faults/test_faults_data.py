"""Bad raw data: `samsar prepare` stops with one line naming the file and the fix, and writes nothing."""

from __future__ import annotations

import numpy as np
import pytest
from fault_helpers import assert_one_line_error, load_test_module, samsar_in_process, tree

data_helpers = load_test_module("data/data_helpers.py", "fault_data_helpers")


@pytest.fixture
def project(tmp_path):
    """A folder dataset of 6 image/mask pairs and a project whose params point at it."""
    folder = data_helpers.make_folder_dataset(tmp_path / "folder", n=6, size=64)
    params = data_helpers.write_params(tmp_path / "project", data={"source": "folder", "folder": {"root": str(folder)}},
                                       preprocess={"tile_size": 32, "stride": 32})
    return folder, params


def _prepare_fails(params, *fragments):
    before = tree(params.parent)
    result = samsar_in_process("prepare", "--params", params)
    assert_one_line_error(result, *fragments)
    assert tree(params.parent) == before, "a failed prepare must write nothing"


@pytest.mark.fault("Bad input", "truncated image (half a PNG)", "exit 1: `<file>: cannot decode the image ...; the file is truncated or corrupt; re-export or replace it`; nothing written")
def test_truncated_image(project):
    folder, params = project
    image = folder / "images" / "chip_02.tif"
    image.unlink()
    png = data_helpers.write_png(folder / "images" / "chip_02.png", np.zeros((64, 64), np.uint8))
    png.write_bytes(png.read_bytes()[:60])
    _prepare_fails(params, "chip_02.png", "truncated or corrupt")


@pytest.mark.fault("Bad input", "zero-byte image", "exit 1: `<file>: ... re-export or replace ...`; nothing written")
def test_zero_byte_image(project):
    folder, params = project
    (folder / "images" / "chip_03.tif").write_bytes(b"")
    _prepare_fails(params, "chip_03.tif", "replace")


@pytest.mark.fault("Bad input", "image and mask of different sizes", "exit 1 naming the mask and both sizes (60x64 vs 64x64); nothing written")
def test_size_mismatch(project):
    folder, params = project
    data_helpers.write_png(folder / "masks" / "chip_01.png",
                           data_helpers.rgb_mask(np.zeros((60, 64), np.uint8), data_helpers.FUSAR1_CLASSES))
    _prepare_fails(params, "chip_01.png", "60x64", "64x64")


@pytest.mark.fault("Bad input", "mask colour that is no class", "exit 1 naming the mask, the colour and its pixel count, and `data.unknown_labels: ignore` as the way to accept it; nothing written")
def test_unknown_colour(project):
    folder, params = project
    mask = data_helpers.rgb_mask(np.zeros((64, 64), np.uint8), data_helpers.FUSAR1_CLASSES)
    mask[:2, :5] = (10, 20, 30)
    data_helpers.write_png(folder / "masks" / "chip_04.png", mask)
    _prepare_fails(params, "chip_04.png", "(10, 20, 30) (10 px)", "unknown_labels: ignore")


@pytest.mark.fault("Bad input", "NaN or Inf in a float SAR image", "exit 1 naming the image and `NaN/Inf`; nothing written")
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf(project, bad):
    folder, params = project
    image = np.ones((64, 64), np.float32)
    image[10, 10] = bad
    data_helpers.write_tiff(folder / "images" / "chip_05.tif", image)
    _prepare_fails(params, "chip_05.tif", "NaN/Inf")


@pytest.mark.fault("Bad input", "image without its mask", "exit 1 naming the image: `... without a label ...`; nothing written")
def test_missing_pair(project):
    folder, params = project
    (folder / "masks" / "chip_02.png").unlink()
    _prepare_fails(params, "chip_02.tif", "without a label")


@pytest.mark.fault("Bad input", "4-band image", "exit 1 naming the image: `4 channels; supported: 1, 2 or 3 ... select the bands`; nothing written")
def test_four_band_image(project):
    folder, params = project
    data_helpers.write_tiff(folder / "images" / "chip_00.tif", np.ones((64, 64, 4), np.float32))
    _prepare_fails(params, "chip_00.tif", "4 channels", "select the bands")


@pytest.mark.fault("Bad input", "complex or integer SAR image", "exit 1 naming the image and its dtype, and how to convert it; nothing written")
def test_unsupported_dtype(project):
    folder, params = project
    data_helpers.write_tiff(folder / "images" / "chip_00.tif", np.ones((64, 64), np.complex64))
    _prepare_fails(params, "chip_00.tif", "unsupported image dtype complex64")


@pytest.mark.fault("Bad input", "failed preprocess over an earlier good one (an image corrupted after prepare)", "exit 1 naming the image; `data/processed` keeps every earlier file byte for byte, no temporary leftovers")
def test_failed_preprocess_keeps_previous_output(project):
    folder, params = project
    for stage in ("prepare", "preprocess"):
        assert samsar_in_process(stage, "--params", params).returncode == 0
    processed = params.parent / "data" / "processed"
    before = tree(processed)
    victim = folder / "images" / "chip_05.tif"
    victim.write_bytes(victim.read_bytes()[:300])
    result = samsar_in_process("preprocess", "--params", params)
    assert_one_line_error(result, "chip_05.tif")
    assert tree(processed) == before
    assert [p.name for p in processed.parent.iterdir() if p.name.startswith(".")] == []
