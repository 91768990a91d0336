"""The pipeline writes only into its project: nothing into the current directory or $HOME."""

from __future__ import annotations

import pytest
from fault_helpers import load_test_module, samsar

_training = load_test_module("training/conftest.py", "fault_training_conftest")
tiny_processed = _training.tiny_processed  # the tiny synthetic dataset of tests/training
tiny_project = _training.tiny_project


@pytest.mark.fault(
    "Faults", "stages run from another folder, with a fresh $HOME (Prefect flow, MLflow tracking, figures)",
    "train, evaluate, card and compare write only into the project: Prefect's database in `<project>/.prefect`, "
    "matplotlib's cache in `<project>/.cache`, MLflow in `<project>/mlflow`; the working folder and $HOME stay empty",
)
def test_nothing_written_to_cwd_or_home(tiny_project, tmp_path):
    params = tiny_project({"tracking": {"enabled": True, "system_metrics": False}, "train": {"epochs": 1}})
    home, cwd = tmp_path / "home", tmp_path / "elsewhere"
    home.mkdir()
    cwd.mkdir()
    env = {"HOME": str(home)}
    for args in (["train", "--variant", "decoder_only"], ["evaluate", "--variant", "decoder_only"],
                 ["card", "--variant", "decoder_only"], ["compare"]):
        result = samsar(*args, "--params", params.root / "params.yaml", cwd=cwd, env=env,
                        unset=("PREFECT_HOME", "MPLCONFIGDIR", "MLFLOW_TRACKING_URI", "XDG_CACHE_HOME", "XDG_CONFIG_HOME"))
        assert result.returncode == 0, result.stderr
    assert list(home.rglob("*")) == [] and list(cwd.rglob("*")) == []
    assert (params.root / ".prefect").is_dir() and (params.root / "mlflow" / "mlflow.db").is_file()
