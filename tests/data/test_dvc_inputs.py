"""External source files are a DVC dependency of `prepare`: editing or adding one makes the stage changed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from data_helpers import FUSAR1_CLASSES, REPO_ROOT, make_folder_dataset, rgb_mask, write_params, write_png, write_tiff


def test_every_shipped_params_file_names_the_inputs_dvc_tracks():
    """dvc.yaml templates ${data.inputs}: a params file without it cannot run `dvc repro`."""
    stage = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]["prepare"]
    assert "${data.inputs}" in stage["deps"]
    for path in [REPO_ROOT / "params.yaml", *sorted((REPO_ROOT / "examples").glob("params-*.yaml"))]:
        data = yaml.safe_load(path.read_text())["data"]
        assert data.get("inputs"), f"{path.name}: data.inputs is missing"
        source = data["source"]
        roots = {"folder": lambda: [data["folder"]["root"]], "fusar_map": lambda: [data["fusar_map"]["root"]],
                 "scene": lambda: [data["scene"]["image"], data["scene"]["label"]],
                 "synthetic": lambda: ["src/samsar/data/synthetic.py"]}[source]()
        assert all(Path(root).is_relative_to(data["inputs"]) for root in roots), path.name


@pytest.fixture
def dvc_project(tmp_path, git_dvc_repo):
    """A git + DVC repository holding the real `prepare` stage, fed from a folder outside the repository."""
    repo = tmp_path / "repo"
    run = git_dvc_repo(repo)
    source = make_folder_dataset(tmp_path / "shared" / "chips", n=6, size=32)
    stage = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]["prepare"]
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"prepare": stage}}, sort_keys=False))
    for dep in stage["deps"]:
        if "${" not in dep:  # the stage's code dependency: a stand-in file is enough here
            (repo / dep).mkdir(parents=True, exist_ok=True)
            (repo / dep / "stand_in.py").write_text("# stand-in\n")
    write_params(repo, data={"source": "folder", "inputs": "../shared/chips", "folder": {"root": "../shared/chips"}},
                 preprocess={"tile_size": 32, "stride": 32})
    run("dvc", "repro", "prepare")
    return repo, source, lambda: run("dvc", "status", "prepare"), lambda: run("dvc", "repro", "prepare")


def test_editing_or_adding_a_source_file_makes_prepare_changed(dvc_project):
    repo, source, status, repro = dvc_project
    assert "up to date" in status()
    assert (repo / "data" / "raw" / "index.json").is_file()

    write_tiff(source / "images" / "chip_03.tif", np.full((32, 32), 0.5, np.float32))  # edit one image in place
    changed = status()
    assert "prepare" in changed and "changed deps" in changed and "shared/chips" in changed
    repro()
    assert "up to date" in status()

    write_tiff(source / "images" / "chip_99.tif", np.ones((32, 32), np.float32))  # add a pair
    write_png(source / "masks" / "chip_99.png", rgb_mask(np.zeros((32, 32), np.uint8), FUSAR1_CLASSES))
    changed = status()
    assert "prepare" in changed and "shared/chips" in changed
    repro()
    assert '"chip_99"' in (repo / "data" / "raw" / "index.json").read_text()
