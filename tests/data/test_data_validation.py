"""validate(): a clean dataset passes; every kind of damage is collected into one report."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from samsar.data.prepare import prepare
from samsar.data.preprocess import preprocess
from samsar.data.validate import validate


@pytest.fixture
def processed(params_factory):
    params = params_factory(data={"synthetic": {"n_scenes": 6, "scene_size": 256, "looks": 1, "seed": 0}})
    prepare(params)
    preprocess(params)
    return params


def _manifest(params):
    return pd.read_parquet(params.processed_dir / "manifest.parquet")


def _save(params, manifest):
    manifest.to_parquet(params.processed_dir / "manifest.parquet", index=False)


def test_clean_dataset_passes_and_writes_both_reports(processed):
    report = validate(processed)
    assert report.ok, report.problems
    doc = json.loads((processed.root / "reports" / "validation.json").read_text())
    assert doc["ok"] is True and doc["problems"] == []
    assert doc["n_tiles"]["train"] > 0 and doc["n_tiles"]["val"] > 0 and doc["n_tiles"]["test"] > 0
    assert "passed" in (processed.root / "reports" / "validation.md").read_text()


def test_every_problem_is_collected_with_its_file(processed):
    manifest = _manifest(processed)
    out = processed.processed_dir
    bad_label, missing_image, nan_image = (
        manifest["label_path"][0],
        manifest["image_path"][1],
        manifest["image_path"][2],
    )
    label = np.asarray(Image.open(out / bad_label)).copy()
    label[:3, :3] = 7
    Image.fromarray(label).save(out / bad_label)
    (out / missing_image).unlink()
    image = np.load(out / nan_image)
    image[0, 0, 0] = np.nan
    np.save(out / nan_image, image)
    manifest.loc[3, "mean"] = 1.5  # schema: out of [0, 1]
    _save(processed, manifest)

    report = validate(processed)
    assert not report.ok
    by_check = {}
    for p in report.problems:
        by_check.setdefault(p.check, []).append(p)
    assert by_check["label_values"][0].file.endswith(bad_label) and "7 (9 px)" in by_check["label_values"][0].message
    assert by_check["image_readable"][0].file.endswith(missing_image)
    assert by_check["image_finite"][0].file.endswith(nan_image)
    assert any(c.startswith("schema:") and "mean" in p.message for c, ps in by_check.items() for p in ps)
    saved = json.loads((processed.root / "reports" / "validation.json").read_text())
    assert saved["ok"] is False and len(saved["problems"]) == len(report.problems)
    assert bad_label in (processed.root / "reports" / "validation.md").read_text()


def test_duplicate_tile_across_splits_is_reported(processed):
    manifest = _manifest(processed)
    train = manifest.index[manifest["split"] == "train"][0]
    test = manifest.index[manifest["split"] == "test"][0]
    out = processed.processed_dir
    for column in ("image_path", "label_path"):
        (out / manifest.at[test, column]).write_bytes((out / manifest.at[train, column]).read_bytes())
    copied = [c for c in manifest.columns if c.startswith("count_") or c in ("mean", "std", "sha256")]
    manifest.loc[test, copied] = manifest.loc[train, copied].to_numpy()
    _save(processed, manifest)
    report = validate(processed)
    assert [p.check for p in report.problems] == ["duplicate_across_splits"]
    assert manifest.at[test, "tile_id"] in report.problems[0].message


def test_empty_split_and_test_class_missing_from_train(processed):
    manifest = _manifest(processed)
    manifest = manifest[manifest["split"] != "val"].reset_index(drop=True)
    is_train = manifest["split"] == "train"
    manifest.loc[is_train, "count_background"] += manifest.loc[is_train, "count_road"]
    manifest.loc[is_train, "count_road"] = 0
    _save(processed, manifest)
    checks = {p.check: p for p in validate(processed).problems}
    assert "val" in checks["split_non_empty"].message
    assert "'road'" in checks["class_in_train"].message
    assert checks["class_in_train"].file.endswith("manifest.parquet")


def test_cli_exits_non_zero_and_prints_each_problem(processed):
    manifest = _manifest(processed)
    (processed.processed_dir / manifest["label_path"][0]).unlink()
    result = subprocess.run(
        [sys.executable, "-m", "samsar.cli", "validate", "--params", str(processed.root / "params.yaml")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert manifest["label_path"][0] in result.stderr and "FAILED" in result.stderr
