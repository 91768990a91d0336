"""`samsar pretrain` always writes its DVC output: with pretraining disabled (or a real checkpoint set)
it records the base the variants start from, so `dvc repro` finds `models/base`."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from samsar.tracking.provenance import base_checkpoint_id, base_checkpoint_path
from samsar.training.pretrain import base_record_path, pretrain

REPO_ROOT = Path(__file__).resolve().parents[2]


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


def test_dvc_repro_runs_the_pretrain_stage_with_pretraining_disabled(tiny_project, tmp_path, git_dvc_repo):
    repo = tmp_path / "repo"
    run = git_dvc_repo(repo)
    stage = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]["pretrain"]
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

    run("dvc", "repro", "pretrain")
    assert json.loads((repo / "models" / "base" / "base_record.json").read_text())["base"] == "random-init"
    assert "up to date" in run("dvc", "status", "pretrain")
