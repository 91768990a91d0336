"""Label decoding: index and palette masks; unknown values are never silently class 0."""

from pathlib import Path

import numpy as np
import pytest
from data_helpers import write_png

from samsar.data.errors import DataError
from samsar.data.labels import LabelDecoder, scan_label
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
