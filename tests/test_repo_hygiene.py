"""The tracking paths the suite exercises write nothing into the repository.

MLflow's process-wide default store is ``sqlite:///mlflow.db`` with artifacts in ``./mlruns``,
both relative to the working directory; an experiment created without an artifact location
puts its artifacts under ``./mlruns`` too. Tests run from the repository root, so a stray
default lands in the checkout (``mlflow.db`` and ``mlruns/`` were once committed that way).

This test runs a project's whole tracking cycle on a SQLite store in tmp_path, from the
repository root as working directory: the project's experiment (``samsar.tracking.store``), a
run with a param, a metric and an artifact, the adapter logged as a pyfunc model
(``samsar.tracking.pyfunc``), a registered version with alias ``champion``, and the model
downloaded back by alias. The untracked and ignored entries of ``git status --porcelain
--ignored`` (ignored ones matter: ``/mlflow.db`` and ``/mlruns/`` are in .gitignore) must be
the same after.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
CLASSES = [
    {"name": "building", "color": [255, 0, 0]},
    {"name": "water", "color": [0, 0, 255]},
    {"name": "background", "color": [0, 0, 0]},
]
# Bytecode caches appear as modules are first imported; they are not tracking output.
IGNORED_CHURN = ("__pycache__", ".pytest_cache")


def _git_status() -> list[str]:
    """``git status --porcelain`` with ignored files listed (collapsed per directory), minus bytecode caches."""
    out = subprocess.run(["git", "status", "--porcelain", "--ignored", "--untracked-files=normal"], cwd=REPO,
                         capture_output=True, text=True, check=True, timeout=60).stdout
    return sorted(line for line in out.splitlines() if not any(part in line for part in IGNORED_CHURN))


def _new_files(status: list[str]) -> set[str]:
    """The untracked (``??``) and ignored (``!!``) entries: what a stray store or artifact write creates.

    Tracked files' states (`` M`` ...) are left out: MLflow only creates files, and in a working
    copy someone is editing they change without this test's doing.
    """
    return {line for line in status if line.startswith(("??", "!!"))}


def _inside_git_checkout() -> str | None:
    """None inside a git work tree, else why the test cannot run."""
    if shutil.which("git") is None:
        return "git is not installed"
    probe = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=REPO, capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        return f"{REPO} is not inside a git checkout (e.g. an sdist or an exported tree)"
    return None


@pytest.fixture
def project(tmp_path, monkeypatch):
    """Params of a throw-away project in tmp_path (its own SQLite store), a saved tiny decoder_only adapter,
    and the repository root as working directory, with no tracking server configured."""
    from samsar.config import Params
    from samsar.data.scaling import SarScaler
    from samsar.models.artifacts import save_adapter
    from samsar.models.variants import build_segmenter

    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "DVC_ROOT"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(REPO)  # where a stray default store (./mlflow.db, ./mlruns) would land
    params = Params.model_validate({"root": str(tmp_path), "data": {"name": "hygiene", "classes": CLASSES},
                                    "variants": ["decoder_only"], "tracking": {"system_metrics": False}})
    segmenter = build_segmenter("decoder_only", backbone="tiny", image_size=64, num_classes=len(CLASSES))
    scaler = SarScaler().fit([np.random.default_rng(0).gamma(1.0, 1.0, (64, 64))])
    meta = {"class_names": [c["name"] for c in CLASSES], "class_colors": [c["color"] for c in CLASSES], "scaling": scaler.to_dict()}
    save_adapter(segmenter, params.variant_dir("decoder_only") / "adapter", meta)
    return params


def test_tracking_cycle_leaves_the_repository_untouched(project, tmp_path):
    reason = _inside_git_checkout()
    if reason:
        pytest.skip(reason)
    from samsar.tracking import pyfunc, store

    params = project
    before = _git_status()

    uri = store.tracking_uri(params)
    assert uri == f"sqlite:///{(tmp_path / 'mlflow' / 'mlflow.db').resolve()}"
    client = store.client(params)
    experiment_id = store.ensure_experiment(client, params)
    run_id = client.create_run(experiment_id, run_name="decoder_only").info.run_id
    client.log_param(run_id, "variant", "decoder_only")
    client.log_metric(run_id, "val_mIoU", 0.3, step=0)
    (tmp_path / "note.txt").write_text("an artifact\n")
    client.log_artifact(run_id, str(tmp_path / "note.txt"))
    model_uri = pyfunc.log_adapter_model(params, run_id, params.variant_dir("decoder_only") / "adapter")
    client.set_terminated(run_id)
    # Registered as samsar.tracking.registry does: the logged model's artifact location as source.
    model = client.get_logged_model(model_uri.removeprefix("models:/"))
    name = store.model_name(params)
    client.create_registered_model(name)
    version = client.create_model_version(name, source=model.artifact_location, run_id=run_id, model_id=model.model_id)
    client.set_registered_model_alias(name, "champion", version.version)
    downloaded = pyfunc.download_adapter(f"models:/{name}@champion", tracking_uri=uri, dst=tmp_path / "download")

    experiment = client.get_experiment_by_name(store.experiment_name(params))
    artifacts = store.artifact_root(params)
    assert experiment.artifact_location == artifacts.as_uri()
    assert artifacts.is_relative_to(tmp_path) and any(artifacts.rglob("note.txt")) and any(artifacts.rglob("MLmodel"))
    assert downloaded.is_relative_to(tmp_path)

    after = _git_status()
    assert _new_files(after) == _new_files(before), (
        "the tracking cycle created files in the repository (MLflow's default store ./mlflow.db or ./mlruns, "
        "or artifacts outside tmp_path?)\n"
        f"new: {sorted(_new_files(after) - _new_files(before))}\ngone: {sorted(_new_files(before) - _new_files(after))}\n"
        "git status --porcelain --ignored after:\n" + "\n".join(after)
    )


def test_test_modules_have_unique_names():
    """Without __init__.py files pytest imports test modules by basename: two alike break collection."""
    names = [path.name for path in (REPO / "tests").rglob("test_*.py")]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
