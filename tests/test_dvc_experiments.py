"""DVC as its users expect: the headline metrics (results/<variant>.json) and training curves are
git-tracked DVC metrics and plots, so `dvc exp show` compares the baseline and an experiment.

The end-to-end test copies the project's dvc.yaml, code and .gitignore into a fresh git + DVC
repository with a tiny params.yaml (one variant, one seed, a few steps, a tiny pretraining, the
project's own SQLite MLflow store), runs `dvc repro`, commits dvc.lock and results/ as the README
says, runs `dvc exp run -S train.lr=...` and reads `dvc exp show --json`, `dvc metrics diff`,
`dvc plots show` and the experiment's MLflow runs.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
VARIANT = "decoder_only"
HEADLINE = f"results/{VARIANT}.json"

TINY = {
    "data": {"name": "tiny", "synthetic": {"n_scenes": 5, "scene_size": 128, "looks": 1, "seed": 0}},
    "preprocess": {"tile_size": 64, "stride": 64, "split": {"val": 0.2, "test": 0.2, "block_size": 64, "seed": 0}},
    "model": {"backbone": "tiny", "image_size": 64},
    "pretrain": {"max_steps": 2, "batch_size": 2,
                 "synthetic": {"n_scenes": 2, "scene_size": 128, "looks": 8, "seed": 1000, "domain": "source"}},
    "variants": [VARIANT],
    "train": {"seeds": [0], "epochs": 2, "max_steps": 6, "batch_size": 4, "warmup_steps": 1, "checkpoint_every": 3,
              "early_stopping_patience": 10},
    "evaluate": {"overlays": 1, "batch_size": 4},
    "tracking": {"enabled": True, "tracking_uri": None, "system_metrics": False},  # mlflow/mlflow.db in the repo
}


def _merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _plot_sources(dvc_yaml: dict) -> dict[str, dict]:
    return {name: spec for plot in dvc_yaml.get("plots", []) for name, spec in plot.items()}


def test_the_overlay_plot_draws_every_variant_from_one_table():
    """The chart's columns are ${variants}: it follows params.yaml, written by compare."""
    dvc_yaml = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())
    overlay = _plot_sources(dvc_yaml)["val_mIoU"]
    assert overlay["x"] == "step" and overlay["y"] == {"results/val_curves.csv": "${variants}"}
    compare_outs = [next(iter(o)) if isinstance(o, dict) else o for o in dvc_yaml["stages"]["compare"]["outs"]]
    assert "results/val_curves.csv" in compare_outs
    train, evaluate = (dvc_yaml["stages"][name]["do"] for name in ("train", "evaluate"))
    assert "plots" not in train  # no per-variant chart of its own
    outs = {next(iter(o)) if isinstance(o, dict) else o: o for o in train["outs"]}
    assert outs["results/curves/${item}.csv"]["results/curves/${item}.csv"] == {"cache": False}
    # The headline is the only metrics file; the detailed one is a plain output.
    assert evaluate["metrics"] == [{"results/${item}.json": {"cache": False}}]
    assert "metrics/${item}.json" in evaluate["outs"]  # a plain output, kept in DVC's cache
    # Outside git-tracked results/, every output is in DVC's cache, so checkouts and experiments restore it.
    for stage in dvc_yaml["stages"].values():
        for out in stage.get("do", stage).get("outs", []):
            name, spec = next(iter(out.items())) if isinstance(out, dict) else (out, {})
            assert name.startswith("results/") or spec.get("cache", True), name


def test_results_are_not_ignored_by_git():
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    for path in ("results/lora.json", "results/curves/lora.csv"):
        ignored = subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=REPO_ROOT)
        assert ignored.returncode == 1, f"{path} is gitignored"


@pytest.fixture
def dvc_repo(tmp_path, git_dvc_repo):
    """A git + DVC repository holding the project's pipeline and a tiny params.yaml; returns (repo, run)."""
    repo = tmp_path / "repo"
    run = git_dvc_repo(repo)
    for name in ("dvc.yaml", ".gitignore"):
        shutil.copy(REPO_ROOT / name, repo / name)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO_ROOT / "src" / "samsar", repo / "src" / "samsar", ignore=skip)  # the stages' code deps
    shutil.copytree(REPO_ROOT / "pipelines", repo / "pipelines", ignore=skip)
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    (repo / "params.yaml").write_text(yaml.safe_dump(_merge(params, TINY), sort_keys=False))
    run("git", "add", "-A")
    run("git", "commit", "-q", "-m", "project")
    return repo, run


def _rows(show: list[dict]) -> dict[str, dict]:
    """``dvc exp show --json`` -> name (or rev) -> that row's data, baseline and experiments alike."""
    rows = {}
    for entry in show:
        rows[entry.get("name") or entry["rev"]] = entry.get("data") or {}
        for experiment in entry.get("experiments") or []:
            for rev in experiment.get("revs", []):
                rows[rev.get("name") or rev["rev"]] = rev.get("data") or {}
    return rows


@pytest.mark.slow  # 4-6 min on 2 busy cores (2.5 min CPU): two pipeline runs of about ten samsar processes each
def test_dvc_exp_show_holds_the_headline_of_the_baseline_and_an_experiment(dvc_repo):
    repo, run = dvc_repo
    run("dvc", "repro")
    # The convention the README states: commit dvc.lock and results/ after `dvc repro`.
    untracked = run("git", "status", "--porcelain", "--untracked-files=all")
    assert all(f"?? {path}" in untracked for path in (HEADLINE, f"results/curves/{VARIANT}.csv", "results/val_curves.csv"))
    run("git", "add", "dvc.lock", "results")
    run("git", "commit", "-q", "-m", "baseline results")
    baseline = json.loads((repo / HEADLINE).read_text())
    baseline_rev = run("git", "rev-parse", "HEAD").strip()

    run("dvc", "exp", "run", "-n", "half-lr", "-S", "train.lr=0.0005")
    rows = _rows(json.loads(run("dvc", "exp", "show", "--json")))
    branch = run("git", "rev-parse", "--abbrev-ref", "HEAD").strip()
    assert {branch, "half-lr"} <= set(rows), list(rows)
    for name in (branch, "half-lr"):
        metrics = rows[name]["metrics"]
        assert set(metrics) == {HEADLINE}, metrics.keys()  # only the headline: metrics/<variant>.json is demoted
        headline = metrics[HEADLINE]["data"]
        for key in ("mIoU", "mIoU_std", "mIoU_ci_low", "mIoU_ci_high", "mF1", "OA", "kappa"):
            assert isinstance(headline[key], float), (name, key, headline)
        assert all(isinstance(value, (int, float)) for value in headline.values())  # no strings, no nested dicts
    assert rows[branch]["metrics"][HEADLINE]["data"] == baseline  # read from the commit, not the workspace
    lrs = {name: rows[name]["params"]["params.yaml"]["data"]["train"]["lr"] for name in (branch, "half-lr")}
    assert lrs == {branch: 0.002, "half-lr": 0.0005}

    diff = json.loads(run("dvc", "metrics", "diff", branch, "--json"))  # the experiment is in the workspace now
    assert diff[HEADLINE]["mIoU"]["old"] == baseline["mIoU"]
    curves = json.loads(run("dvc", "plots", "show", "--json", "val_mIoU"))
    points = curves["data"]["val_mIoU"][0]["content"]["data"]["values"]
    assert len(points) == 2 and all(0.0 <= float(p[VARIANT]) <= 1.0 for p in points)  # one point per validation

    # Each MLflow run of the experiment names it and its baseline commit; the plain `dvc repro` runs do not.
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("samsar-tiny").experiment_id])
    tagged = [r for r in runs if r.data.tags.get("dvc.exp_name") == "half-lr"]
    assert tagged and len(tagged) < len(runs)
    assert all(r.data.tags["dvc.exp_baseline_rev"] == baseline_rev and r.data.params["train.lr"] == "0.0005" for r in tagged)
