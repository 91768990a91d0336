"""Label decoding: index and palette masks; unknown values are never silently class 0."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from data_helpers import write_png, write_tiff

from samsar.data.errors import DataError
from samsar.data.labels import LabelDecoder, scan_label
from samsar.data.prepare import prepare
from samsar.data.preprocess import preprocess
from samsar.data.sources import FUSAR_MAP_PALETTES

FUSAR2 = FUSAR_MAP_PALETTES[2]


def _rgb_decoder(unknown="error"):
    colors = tuple(FUSAR2)
    return LabelDecoder(tuple(FUSAR2.values()), colors, 255, "rgb", unknown=unknown)


def test_rgb_palette_maps_each_colour_to_its_class():
    decoder = _rgb_decoder()
    colors = np.array(list(FUSAR2), dtype=np.uint8)
    mask = colors[np.arange(len(colors))][None]  # one pixel of each colour
    assert decoder.decode(mask, Path("m.png")).tolist() == [list(range(len(colors)))]


def test_fusar2_firebrick_colour_is_an_error_naming_file_value_and_count():
    decoder = _rgb_decoder()
    mask = np.zeros((4, 4, 3), np.uint8)
    mask[:] = (0, 0, 255)
    mask[:2, :3] = (178, 34, 34)
    with pytest.raises(DataError) as err:
        decoder.decode(mask, Path("tile_07.png"))
    message = str(err.value)
    assert "tile_07.png" in message and "(178, 34, 34)" in message and "6 px" in message


def test_unknown_colour_becomes_ignore_when_params_say_so():
    decoder = _rgb_decoder(unknown="ignore")
    mask = np.zeros((2, 2, 3), np.uint8)
    mask[:] = (0, 0, 255)
    mask[0, 0] = (178, 34, 34)
    assert decoder.decode(mask, Path("m.png")).tolist() == [[255, 0], [0, 0]]


def test_index_labels_with_offset_and_ignore_values():
    decoder = LabelDecoder(("a", "b", "c"), ((0, 0, 0),) * 3, 255, "index", value_offset=1, ignore_values=(0,))
    raw = np.array([[0, 1, 2, 3]], np.uint8)[..., None]
    assert decoder.decode(raw, Path("l.png")).tolist() == [[255, 0, 1, 2]]
    with pytest.raises(DataError, match=r"l\.png.*4 \(1 px\)"):
        decoder.decode(np.array([[4]], np.uint8)[..., None], Path("l.png"))


def test_scan_label_counts_classes_and_reports_file_totals(tmp_path):
    decoder = LabelDecoder(("a", "b"), ((0, 0, 0), (0, 255, 0)), 255, "index")
    label = np.zeros((40, 30), np.uint8)
    label[:10] = 1
    label[0, :5] = 255
    path = write_png(tmp_path / "label.png", label)
    assert scan_label(decoder, path, (40, 30)) == {"a": 900, "b": 295, "ignore": 5}
    label[30:, :] = 9
    write_png(path, label)
    with pytest.raises(DataError, match=r"label\.png.*9 \(300 px\)"):
        scan_label(decoder, path, (40, 30))


@pytest.mark.parametrize("dtype", [np.int16, np.int32])
def test_signed_index_labels_with_negative_ignore_value(dtype):
    """Sen1Floods11-style labels: -1 no data, 0 not water, 1 water."""
    decoder = LabelDecoder(("dry", "water"), ((0, 0, 0), (0, 0, 255)), 255, "index", ignore_values=(-1,))
    raw = np.array([[-1, 0, 1, 1]], dtype)[..., None]
    assert decoder.decode(raw, Path("l.tif")).tolist() == [[255, 0, 1, 1]]
    with pytest.raises(DataError, match=r"l\.tif.*-2 \(1 px\).*unknown_labels: ignore"):
        decoder.decode(np.array([[-2, 0]], dtype)[..., None], Path("l.tif"))
    big = np.array([[70000, 1]], np.int32)[..., None]  # past the uint16 range: unknown, not an index error
    with pytest.raises(DataError, match="70000"):
        decoder.decode(big, Path("l.tif"))


def test_decode_ignores_pixels_marked_invalid_whatever_their_value():
    decoder = LabelDecoder(("a", "b"), ((0, 0, 0),) * 2, 255, "index")
    raw = np.array([[0, 1, 9]], np.uint8)[..., None]
    assert decoder.decode(raw, Path("l.png"), valid=np.array([[True, False, False]])).tolist() == [[0, 255, 255]]


@pytest.mark.parametrize("dtype,values,data", [
    (np.int16, (-1, 0, 1), {"ignore_values": [-1]}),
    (np.int32, (-1, 0, 1), {"ignore_values": [-1]}),
    (np.uint16, (0, 1, 2), {"ignore_values": [0], "label_offset": 1}),  # 1-based classes, 0 = no data, in a folder
])
def test_folder_labels_of_every_integer_dtype_with_offset_and_ignore_values(tmp_path, params_factory, dtype, values, data):
    nodata_value, first, second = values
    for i in range(5):
        label = np.full((32, 32), first, dtype)
        label[:, 16:] = second
        label[:4, :] = nodata_value  # 128 unlabelled pixels per chip
        write_tiff(tmp_path / "folder" / "masks" / f"chip_{i}.tif", label)
        write_tiff(tmp_path / "folder" / "images" / f"chip_{i}.tif",
                   np.random.default_rng(i).exponential(1.0, (32, 32)).astype(np.float32))
    classes = [{"name": "dry", "color": [0, 0, 0]}, {"name": "water", "color": [0, 0, 255]}]
    params = params_factory(
        data={"source": "folder", "classes": classes, "background": None,
              "folder": {"root": str(tmp_path / "folder"), "mask_mode": "index"}, **data},
        preprocess={"tile_size": 32, "stride": 32},
    )
    prepare(params)
    manifest = pd.read_parquet(preprocess(params))
    assert len(manifest) == 5 and (manifest["count_ignore"] == 128).all()
    assert (manifest["count_dry"] == 28 * 16).all() and (manifest["count_water"] == 28 * 16).all()
