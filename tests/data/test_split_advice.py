"""validate's split advice: the settings it names, simulated on the class layout, really pass."""

import re

import numpy as np
import pandas as pd
import pytest
from data_helpers import write_png, write_tiff

from samsar.data.prepare import prepare
from samsar.data.preprocess import preprocess
from samsar.data.split_advice import split_advice
from samsar.data.validate import validate

N_CLASSES = 7  # besides the background
HEIGHT, WIDTH, TILE, BLOCK = 64, 2 * N_CLASSES * 64, 32, 64


@pytest.fixture
def paired_scene(tmp_path):
    """One 64 x 896 scene, 14 blocks of 64 px in a row: background everywhere, and class c in a
    patch across the border of blocks 2c-2 and 2c-1 (so in exactly two blocks, and in whole tiles)."""
    label = np.ones((HEIGHT, WIDTH), np.uint8)  # value 1: background (label offset 1)
    for c in range(1, N_CLASSES + 1):
        border = (2 * c - 1) * BLOCK
        label[16:32, border - 16 : border + 16] = c + 1
    image = np.random.default_rng(0).exponential(label.astype(np.float32))
    write_tiff(tmp_path / "scene.tif", image.astype(np.float32))
    write_png(tmp_path / "scene_label.png", label)
    return tmp_path


def _params(params_factory, scene_dir, **split):
    names = ["background", *(f"class{c}" for c in range(1, N_CLASSES + 1))]
    return params_factory(
        data={
            "source": "scene",
            "classes": [{"name": n, "color": [i, i, i]} for i, n in enumerate(names)],
            "background": None,
            "scene": {"image": str(scene_dir / "scene.tif"), "label": str(scene_dir / "scene_label.png"),
                      "ignore_values": [0], "label_offset": 1},
        },
        preprocess={"tile_size": TILE, "stride": TILE,
                    "split": {"val": 0.25, "test": 0.25, "block_size": BLOCK, "seed": 0, **split}},
    )


def _advised(message: str) -> list[dict]:
    """The ``preprocess.split {field: value, ...}`` settings named in a message."""
    options = []
    for body in re.findall(r"preprocess\.split \{([^}]*)\}", message):
        fields = dict(part.split(": ") for part in body.split(", "))
        options.append({k: v if k == "mode" else (int(v) if k in ("block_size", "seed") else float(v)) for k, v in fields.items()})
    return options


def _check_split_is_sound(params):
    manifest = pd.read_parquet(params.processed_dir / "manifest.parquet")
    names = params.data.class_names
    present = {s: {n for n in names if manifest.loc[manifest["split"] == s, f"count_{n}"].sum() > 0}
               for s in ("train", "val", "test")}
    assert present["val"] and present["test"]
    assert present["test"] <= present["train"] and present["val"] <= present["train"]
    owner = np.full((HEIGHT, WIDTH), "", dtype=object)  # no pixel in tiles of two splits
    for r in manifest.itertuples():
        window = owner[r.row_off : r.row_off + r.height, r.col_off : r.col_off + r.width]
        assert set(window[window != ""].ravel()) <= {r.split}
        window[:] = r.split


def test_advice_names_settings_that_then_pass_validation(paired_scene, params_factory):
    params = _params(params_factory, paired_scene)
    prepare(params)
    preprocess(params)
    report = validate(params)
    problems = [p for p in report.problems if p.check == "class_in_train"]
    assert problems, "the random 64 px block split was expected to leave a test class out of train"
    options = _advised(problems[0].message)
    assert options[0] == {"mode": "stratified"}  # the same blocks, chosen per class
    assert any("block_size" in o for o in options)  # and a finer block size
    assert all(p.message.endswith(problems[0].message.split("; ", 1)[1]) for p in problems)

    for option in options:
        advised = _params(params_factory, paired_scene, **option)
        preprocess(advised)
        assert validate(advised).ok, (option, validate(advised).problems)
        _check_split_is_sound(advised)


def test_advice_says_so_when_no_setting_can_work(params_factory):
    params = params_factory()  # no raw index: the layout comes from the manifest alone
    names = params.data.class_names
    manifest = pd.DataFrame({
        "split": ["train", "test"], "source_file": ["scene.tif"] * 2, "row_off": [0, 0], "col_off": [0, 128],
        "height": [128, 128], "width": [128, 128],
        **{f"count_{n}": [10, 10] for n in names},
    })
    message = split_advice(manifest, params, ["road"])
    assert message.startswith("no preprocess.split setting tried")
    assert "add labelled data holding 'road', or lower preprocess.tile_size" in message
