"""prepare -> preprocess -> validate through the CLI, driven by a params file alone.

Synthetic data always; HRSID-mini and the PolSF scene through the example params files in
``examples/`` (copied unchanged as a project's params.yaml), skipped without ../shared/data.
"""

import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from data_helpers import REPO_ROOT, SHARED_DATA, write_params

from samsar.config import load_params


def _run_stages(params_path):
    for stage in ("prepare", "preprocess", "validate"):
        result = subprocess.run(
            [sys.executable, "-m", "samsar.cli", stage, "--params", str(params_path)],
            capture_output=True,
            text=True,
            cwd=params_path.parent,
        )
        assert result.returncode == 0, f"samsar {stage} failed:\n{result.stderr}"
    return load_params(params_path)


def _project_from_example(tmp_path, example):
    """A project folder holding the example as params.yaml, with ../shared/data beside it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real SAR test data not found at {SHARED_DATA.resolve()} (../shared/data from the repo root)")
    project = tmp_path / "project"
    project.mkdir()
    (tmp_path / "shared").symlink_to(SHARED_DATA.resolve().parent, target_is_directory=True)
    shutil.copy(REPO_ROOT / "examples" / example, project / "params.yaml")
    return project / "params.yaml"


def _check_outputs(params):
    manifest = pd.read_parquet(params.processed_dir / "manifest.parquet")
    report = json.loads((params.root / "reports" / "validation.json").read_text())
    assert report["ok"] is True
    assert (
        report["n_tiles"] == manifest["split"].value_counts().reindex(["train", "val", "test"], fill_value=0).to_dict()
    )
    assert all((params.processed_dir / p).is_file() for p in manifest["image_path"])
    dataset = json.loads((params.processed_dir / "dataset.json").read_text())
    assert [c["name"] for c in dataset["classes"]] == params.data.class_names
    return manifest, dataset


def test_synthetic_defaults_shaped_config(tmp_path):
    params = _run_stages(write_params(tmp_path / "project"))
    manifest, dataset = _check_outputs(params)
    assert len(manifest) == 6 * 4  # six 256 px scenes, four 128 px tiles each
    frequencies = json.loads((params.raw_dir / "class_frequencies.json").read_text())
    assert set(frequencies["fractions"]) == set(params.data.class_names)
    assert all(frequencies["fractions"][n] > 0.02 for n in params.data.class_names)
    assert dataset["scaling"]["input_kind"] == "intensity" and dataset["scaling"]["to_db"] is True
    # Synthetic scenes are split by scene: no scene contributes tiles to two splits.
    assert (manifest.groupby("source_file")["split"].nunique() == 1).all()


def test_hrsid_mini_folder_source(tmp_path):
    params = _run_stages(_project_from_example(tmp_path, "params-hrsid-mini.yaml"))
    manifest, dataset = _check_outputs(params)
    assert params.data.class_names == ["background", "ship"]
    assert manifest["source_file"].nunique() == 36
    assert (manifest.groupby("source_file")["split"].nunique() == 1).all()
    assert manifest["count_ship"].sum() > 0 and manifest["count_ignore"].sum() == 0
    index = json.loads((params.raw_dir / "index.json").read_text())
    assert len(index["items"]) == 36 and not (params.raw_dir / "images").exists()  # listed, not copied


def test_polsf_scene_source(tmp_path):
    params = _run_stages(_project_from_example(tmp_path, "params-polsf.yaml"))
    manifest, dataset = _check_outputs(params)
    assert set(manifest["split"]) == {"train", "val", "test"}
    # Label 0 (unlabelled) is ignored; classes 1..5 become 0..4 and all of them reach training.
    assert manifest["count_ignore"].sum() > 0
    train = manifest[manifest["split"] == "train"]
    assert all(train[f"count_{n}"].sum() > 0 for n in params.data.class_names)
    coverage = {s: np.zeros((900, 1024), bool) for s in ("train", "val", "test")}
    for r in manifest.itertuples():
        coverage[r.split][r.row_off : r.row_off + r.height, r.col_off : r.col_off + r.width] = True
    assert not (coverage["train"] & (coverage["test"] | coverage["val"])).any()
    assert len(dataset["scaling"]["low"]) == 3  # Pauli RGB: one clip range per channel


def test_s1_terramind_float_dual_pol_folder_source(tmp_path):
    params = _run_stages(_project_from_example(tmp_path, "params-s1-terramind.yaml"))
    manifest, dataset = _check_outputs(params)
    assert len(manifest) == 5 and manifest["split"].value_counts().to_dict() == {"train": 3, "val": 1, "test": 1}
    scaling = dataset["scaling"]
    assert scaling["compose"] == ["VV", "VH", "VV-VH"] and scaling["file_bands"] == 2 and scaling["input_kind"] == "db"
    # Fitted in dB on the training tiles: VV brighter than VH, the VV-VH ratio positive at the top.
    assert -30 < scaling["low"][1] < scaling["low"][0] < scaling["high"][0] < 5 and scaling["high"][2] > 0
    assert manifest["count_ignore"].sum() == 0  # no label 0 (no data) in these tiles
    assert manifest["count_snow/ice"].sum() == 224 * 224  # label 7 -> class index 6 through data.label_offset
