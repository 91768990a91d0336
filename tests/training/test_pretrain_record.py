"""`samsar pretrain` always writes its DVC output: with pretraining disabled (or a real checkpoint set)
it records the base the variants start from, so `dvc repro` finds `models/base`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from samsar.tracking.provenance import base_checkpoint_id, base_checkpoint_path
from samsar.training.pretrain import base_record_path, pretrain

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def test_disabled_pretrain_records_a_random_init_base(tiny_project):
    params = tiny_project()  # the fixture disables pretraining
    assert pretrain(params) is None
    record = json.loads(base_record_path(params).read_text())
    assert record["base"] == "random-init" and record["checkpoint"] is None and record["base_id"] == "random-init"
    assert base_record_path(params).parent == params.path("models/base")
    assert base_checkpoint_path(params) is None and base_checkpoint_id(params) == "random-init"  # what training loads


def test_a_configured_checkpoint_is_recorded_with_its_hash(tiny_project, tmp_path):
    checkpoint = tmp_path / "sam_vit_b.pth"
    checkpoint.write_bytes(b"weights")
    params = tiny_project({"model": {"checkpoint": str(checkpoint)}, "pretrain": {"enabled": True}})
    assert pretrain(params) == checkpoint
    record = json.loads(base_record_path(params).read_text())
    assert record["base"] == "checkpoint" and record["checkpoint"] == str(checkpoint)
    assert record["base_id"] == base_checkpoint_id(params) != "random-init"


def test_dvc_repro_runs_the_pretrain_stage_with_pretraining_disabled(tiny_project, tmp_path):
    dvc = BIN / "dvc"
    if not dvc.is_file() or shutil.which("git") is None or not (BIN / "samsar").is_file():
        pytest.skip("dvc, git or the samsar command is not installed")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "HOME": str(tmp_path / "home"),
           "XDG_CACHE_HOME": str(tmp_path / "cache"), "XDG_CONFIG_HOME": str(tmp_path / "config"),
           "DVC_SITE_CACHE_DIR": str(tmp_path / "dvc-site"), "DVC_NO_ANALYTICS": "1", "GIT_CONFIG_NOSYSTEM": "1"}
    repo = tmp_path / "repo"
    stage = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]["pretrain"]
    repo.mkdir()
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"pretrain": stage}}, sort_keys=False))
    for dep in stage["deps"]:  # the stage's code dependencies: stand-ins are enough here
        path = repo / dep
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".py":
            path.write_text("# stand-in\n")
        else:
            path.mkdir(exist_ok=True)
            (path / "stand_in.py").write_text("# stand-in\n")
    tiny_project(root=repo)  # writes repo/params.yaml: pretrain.enabled false

    def run(*args):
        result = subprocess.run(args, cwd=repo, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    run("git", "init", "-q")
    run(str(dvc), "init", "-q")
    run(str(dvc), "repro", "pretrain")
    assert json.loads((repo / "models" / "base" / "base_record.json").read_text())["base"] == "random-init"
    assert "up to date" in run(str(dvc), "status", "pretrain")
