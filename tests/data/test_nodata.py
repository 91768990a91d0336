"""Nodata end to end on generated Sentinel-1-like scenes: out of the scaler fit, the labels, the loss,
the metrics, and written as nodata by predict."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import rasterio
import torch
from data_helpers import write_params
from PIL import Image
from s1_helpers import S1_CLASSES, class_map, s1_power, write_s1

from samsar.config import load_params
from samsar.data.errors import DataError
from samsar.data.prepare import prepare
from samsar.data.preprocess import preprocess
from samsar.evaluation.metrics import confusion_matrix
from samsar.training.losses import SegmentationLoss

SIZE, TILE, TOP, LEFT = 384, 64, 16, 40  # nodata border: the top 16 rows and the left 40 columns


def _border() -> np.ndarray:
    mask = np.zeros((SIZE, SIZE), bool)
    mask[:TOP] = True
    mask[:, :LEFT] = True
    return mask


def _scene(tmp_path, fill: float, file_nodata, params_nodata: list):
    """A 2-band power scene with a nodata border of ``fill``, a label valid everywhere (values 1..3), and its params."""
    classes = class_map(SIZE, SIZE)
    power = s1_power(classes)
    power[_border()] = fill
    image = write_s1(tmp_path / "s1" / "scene_VVVH.tif", power, nodata=file_nodata)
    label = write_s1(tmp_path / "s1" / "scene_label.tif", (classes + 1).astype(np.uint8), descriptions=())
    params = load_params(write_params(
        tmp_path / "project",
        data={"source": "scene", "classes": S1_CLASSES, "background": None, "label_offset": 1,
              "scene": {"image": str(image), "label": str(label)}, "bands": {"VV": 1, "VH": 2}, "nodata": params_nodata},
        preprocess={"input_kind": "power", "compose": ["VV", "VH", "VV-VH"], "tile_size": TILE, "stride": TILE,
                    "split": {"val": 0.2, "test": 0.2, "block_size": 128, "seed": 0}},
    ))
    return params, image, power


CASES = {
    "NaN declared by the file": (np.nan, np.nan, []),
    "NaN declared in params": (np.nan, None, ["nan"]),
    "-9999 declared by the file": (-9999.0, -9999.0, []),
    "-9999 declared in params": (-9999.0, None, [-9999]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_nodata_border_is_out_of_fit_labels_loss_metrics_and_prediction(tmp_path, case):
    params, image_path, power = _scene(tmp_path, *CASES[case])
    border = _border()
    prepare(params)
    index = json.loads((params.raw_dir / "index.json").read_text())
    assert index["items"][0]["nodata_pixels"] == border.sum()
    assert index["items"][0]["class_counts"]["ignore"] == border.sum()  # labels under nodata never count
    manifest = pd.read_parquet(preprocess(params))
    dataset = json.loads((params.processed_dir / "dataset.json").read_text())

    # Tiles of the left column are 62 % nodata or more (> max_nodata_fraction 0.5): skipped and counted.
    assert dataset["nodata"]["tiles_skipped"] == SIZE // TILE
    assert (manifest["col_off"] > 0).all() and len(manifest) == (SIZE // TILE) ** 2 - SIZE // TILE
    # Every nodata pixel of a kept tile is ignore_index in its label, and only those.
    for row in manifest.itertuples():
        window = border[row.row_off : row.row_off + row.height, row.col_off : row.col_off + row.width]
        assert row.count_ignore == window.sum(), row.tile_id
    assert manifest["count_ignore"].sum() == dataset["nodata"]["tile_pixels"] == (SIZE // TILE - 1) * TOP * TILE

    # The scaler fit saw exactly the valid pixels of the training tiles.
    with np.errstate(divide="ignore", invalid="ignore"):
        db = 10 * np.log10(np.maximum(np.abs(power), np.float32(1e-10)))
    features = np.concatenate([db, db[..., :1] - db[..., 1:]], axis=-1)
    train = manifest[manifest["split"] == "train"]
    pixels = np.concatenate([
        features[r.row_off : r.row_off + r.height, r.col_off : r.col_off + r.width][
            ~border[r.row_off : r.row_off + r.height, r.col_off : r.col_off + r.width]]
        for r in train.itertuples()
    ])
    low, high = np.percentile(pixels, [1.0, 99.0], axis=0)
    scaling = dataset["scaling"]
    assert scaling["low"] == pytest.approx(low.tolist(), rel=1e-4) and scaling["high"] == pytest.approx(high.tolist(), rel=1e-4)
    assert scaling["high"][0] < 5.0  # a -9999 power value would read as +40 dB here
    assert scaling["compose"] == ["VV", "VH", "VV-VH"] and scaling["band_names"] == ["VV", "VH"]

    # A border tile: image 0 and label ignore at nodata; the loss and the metrics never see those pixels.
    tile = manifest[(manifest["row_off"] == 0) & (manifest["col_off"] == TILE)].iloc[0]
    image = np.load(params.processed_dir / tile.image_path)
    label = np.asarray(Image.open(params.processed_dir / tile.label_path))
    nodata = border[:TILE, TILE : 2 * TILE]
    assert (image[:, nodata] == 0).all() and (label[nodata] == 255).all() and (label[~nodata] < 3).all()
    target = torch.from_numpy(label.astype(np.int64))[None]
    logits = torch.randn(1, 3, TILE, TILE, generator=torch.Generator().manual_seed(0))
    changed = logits.clone()
    changed[:, :, torch.from_numpy(nodata)] = torch.tensor([50.0, -50.0, 0.0])[:, None]
    loss = SegmentationLoss(None, 255, dice_weight=0.5)
    assert loss(changed, target).item() == pytest.approx(loss(logits, target).item(), abs=1e-6)
    pred = logits.argmax(1)[0].numpy()
    assert confusion_matrix(pred, label, 3, 255).sum() == (~nodata).sum()

    # predict reuses the stored scaler (bands, composition, nodata values) and writes 255 at the border.
    from samsar.inference.predict import predict_scene
    from samsar.models.artifacts import save_adapter
    from samsar.models.variants import build_segmenter

    segmenter = build_segmenter("decoder_only", backbone="tiny", image_size=TILE, num_classes=3)
    meta = {"class_names": [c["name"] for c in S1_CLASSES], "class_colors": [c["color"] for c in S1_CLASSES],
            "scaling": scaling}
    adapter = save_adapter(segmenter, tmp_path / "adapter", meta)
    result = predict_scene(adapter, image_path, tmp_path / "out" / "classes.tif", device="cpu")
    with rasterio.open(result.class_map) as ds:
        classes = ds.read(1)
        assert ds.nodata == 255
    assert (classes[border] == 255).all() and (classes[~border] < 3).all()


def test_nan_without_a_nodata_declaration_is_an_error_that_says_how_to_declare_it(tmp_path):
    params, image, _ = _scene(tmp_path, np.nan, None, [])
    with pytest.raises(DataError) as err:
        prepare(params)
    message = str(err.value)
    assert str(image) in message and "NaN/Inf" in message and "data.nodata: [nan]" in message
    assert "\n" not in message


def test_inf_is_an_error_even_when_nan_is_nodata(tmp_path):
    params, image, power = _scene(tmp_path, np.nan, np.nan, [])
    power[200, 200, 1] = np.inf
    write_s1(image, power, nodata=np.nan)
    with pytest.raises(DataError, match=r"scene_VVVH\.tif: 1 NaN/Inf pixel\(s\) outside the nodata mask in rows 200-201"):
        prepare(params)


def test_declared_value_in_an_unused_band_does_not_make_nodata(tmp_path):
    """Only the bands data.bands selects count: a -9999 in band 3 (not used) leaves the pixel valid."""
    classes = class_map(128, 128)
    power = np.concatenate([s1_power(classes), np.full((128, 128, 1), -9999.0, np.float32)], axis=-1)
    power[:10, :, 0] = -9999.0
    image = write_s1(tmp_path / "s1" / "three.tif", power, descriptions=("VV", "VH", "angle"))
    label = write_s1(tmp_path / "s1" / "three_label.tif", (classes + 1).astype(np.uint8), descriptions=())
    params = load_params(write_params(
        tmp_path / "project",
        data={"source": "scene", "classes": S1_CLASSES, "background": None, "label_offset": 1, "nodata": [-9999],
              "scene": {"image": str(image), "label": str(label)}, "bands": ["VV", "VH"]},
        preprocess={"tile_size": 64, "stride": 64, "split": {"val": 0.2, "test": 0.2, "block_size": 64, "seed": 0}},
    ))
    prepare(params)
    item = json.loads((params.raw_dir / "index.json").read_text())["items"][0]
    assert item["bands"] == [0, 1] and item["nodata_pixels"] == 10 * 128
