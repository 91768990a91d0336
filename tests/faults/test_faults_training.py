"""`samsar train` stopped by SIGTERM or Ctrl+C; `--resume` from checkpoints that do not fit (other
params or data, another variant), are missing, truncated or pickled; a budget of no steps."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from fault_helpers import assert_one_line_error, load_test_module, samsar, tree

from samsar.training.checkpoint import load_checkpoint, save_checkpoint
from samsar.training.loop import Trainer, check_resumable, checkpoint_path, train_variant

_training = load_test_module("training/conftest.py", "fault_training_conftest")
tiny_processed = _training.tiny_processed  # the tiny synthetic dataset and project of tests/training
tiny_project = _training.tiny_project

VARIANT = "decoder_only"


@pytest.fixture(autouse=True)
def _project_store_only(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def _prefect_env(tmp_path: Path) -> dict[str, str]:
    """Prefect's database of the test's own (concurrent runs never share one)."""
    return {"PREFECT_HOME": str(tmp_path / "prefect-home")}


def _train(root: Path, *extra: str, flow: bool = False, env: dict | None = None) -> subprocess.CompletedProcess:
    """``samsar train`` of the project at ``root``: through the Prefect flow (the default) or ``--no-flow`` (faster)."""
    return samsar("train", "--variant", VARIANT, "--params", root / "params.yaml", *extra,
                  *(() if flow else ("--no-flow",)), cwd=root, env=env)


def _crash_mid_run(params, monkeypatch, at_batch: int = 4) -> dict:
    """Train in this process until a failure at the ``at_batch``-th batch: the checkpoint of step 2
    (``checkpoint_every: 2``) is left, as a crash or power cut would leave it. Returns its state."""
    real_step = Trainer._micro_step
    calls = {"n": 0}

    def failing_step(self, batch, epoch, index):
        calls["n"] += 1
        if calls["n"] == at_batch:
            raise RuntimeError("power cut")
        return real_step(self, batch, epoch, index)

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "_micro_step", failing_step)
        with pytest.raises(RuntimeError, match="power cut"):
            train_variant(params, VARIANT)
    return load_checkpoint(checkpoint_path(params, VARIANT, 0))["state"]


def _interrupted_train(tmp_path: Path, tiny_project, stop) -> tuple:
    """Start ``samsar train`` (the Prefect flow; 2 seeds, so in child processes; MLflow on), call
    ``stop(process)`` once both seeds validated epoch 0, and wait for it to end. ``checkpoint_every``
    is out of reach, so only the stop writes checkpoints. Returns (params, exit code, stderr, the
    MLflow client and the variant runs)."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    params = tiny_project({"train": {"seeds": [0, 1], "epochs": 12, "checkpoint_every": 1000},
                           "tracking": {"enabled": True, "tracking_uri": uri, "system_metrics": False}})
    log = tmp_path / "train.log"
    progress = [params.variant_dir(VARIANT) / "seeds" / str(s) / "history.csv" for s in (0, 1)]
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "samsar.cli", "train", "--variant", VARIANT, "--params", "params.yaml"],
            cwd=params.root, env={**os.environ, "PYTHONUNBUFFERED": "1", **_prefect_env(tmp_path)},
            stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True,  # its own process group, as a shell job
        )
        try:
            deadline = time.monotonic() + 240
            while not all(p.is_file() for p in progress):
                assert process.poll() is None, f"train exited {process.returncode} early:\n{log.read_text()}"
                assert time.monotonic() < deadline, f"no progress in 240 s:\n{log.read_text()}"
                time.sleep(0.1)
            stop(process)
            code = process.wait(timeout=120)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
    client = MlflowClient(uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                              filter_string="tags.run_kind = 'variant'", order_by=["start_time DESC"])
    return params, code, log.read_text(), client, runs


def _assert_stopped_cleanly(params, code: int, err: str, runs, signum: signal.Signals) -> None:
    """Exit 128 + signum with the one yellow line; the run KILLED; every seed saved mid-run; no adapter."""
    assert code == 128 + signum, err
    assert f"interrupted by {signum.name}; resume with `samsar train --variant {VARIANT} --resume`" in err and "Traceback" not in err, err
    [run] = runs
    assert (run.info.status, run.data.tags["interrupted_by"]) == ("KILLED", signum.name) and run.info.end_time
    for seed in (0, 1):
        path = checkpoint_path(params, VARIANT, seed)
        state = load_checkpoint(path)["state"]
        assert state["step"] > 0 and state["stop_reason"] == "", (seed, state["step"], state["stop_reason"])
        assert [p.name for p in path.parent.iterdir()] == ["last.pt"], "temporary checkpoint files left"
    assert not (params.variant_dir(VARIANT) / "adapter").exists()


@pytest.mark.fault(
    "Faults", "SIGTERM during `samsar train` (Prefect flow, 2 seeds training in child processes)",
    "exit 143 with one yellow line `interrupted by SIGTERM; resume with ...`, no traceback; the MLflow parent run is "
    "KILLED with an end time; each seed saved a checkpoint where it stopped (mid-run, no temporary files); no "
    "`models/<variant>/adapter` is written; `samsar train --resume` finishes the run (exit 0, adapter written)",
)
def test_sigterm_during_train_saves_every_seed_and_kills_the_run(tiny_project, tmp_path):
    params, code, err, client, runs = _interrupted_train(tmp_path, tiny_project, lambda p: p.send_signal(signal.SIGTERM))
    _assert_stopped_cleanly(params, code, err, runs, signal.SIGTERM)

    resumed = _train(params.root, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert (params.variant_dir(VARIANT) / "adapter" / "adapter.safetensors").is_file()
    latest = client.search_runs([runs[0].info.experiment_id], filter_string="tags.run_kind = 'variant'",
                                order_by=["start_time DESC"])[0]
    assert latest.info.run_id != runs[0].info.run_id and latest.info.status == "FINISHED"


@pytest.mark.fault(
    "Faults", "Ctrl+C during `samsar train` (SIGINT to the whole process group: CLI, seed processes; Prefect flow)",
    "exit 130 with one yellow line `interrupted by SIGINT; resume with ...`, no traceback, within seconds (Prefect's "
    "temporary server runs in its own session, so it outlives the Ctrl+C and the interrupted flow run is reported); "
    "MLflow parent run KILLED with an end time; each seed saved a checkpoint where it stopped; no adapter written",
)
def test_ctrl_c_during_train_saves_every_seed_and_kills_the_run(tiny_project, tmp_path):
    params, code, err, _, runs = _interrupted_train(tmp_path, tiny_project, lambda p: os.killpg(p.pid, signal.SIGINT))
    _assert_stopped_cleanly(params, code, err, runs, signal.SIGINT)


@pytest.mark.fault(
    "Silently wrong", "`samsar train --resume` after `train.lr` was changed in params.yaml",
    "exit 1, one line naming the checkpoint, `train.lr 0.001 -> 0.002` and `--force-resume`; the checkpoint is "
    "byte-identical; `--force-resume` (through the Prefect flow) continues from its step to the full budget",
)
def test_resume_with_another_learning_rate_is_refused(tiny_project, tmp_path, monkeypatch):
    params = tiny_project()
    saved = _crash_mid_run(params, monkeypatch)
    assert saved["step"] == 2
    params = tiny_project({"train": {"lr": 0.002}})
    ckpt = checkpoint_path(params, VARIANT, 0)
    before = ckpt.read_bytes()

    line = assert_one_line_error(_train(params.root, "--resume"), str(ckpt), "train.lr 0.001 -> 0.002", "--force-resume")
    assert "data hash" not in line
    assert ckpt.read_bytes() == before

    forced = _train(params.root, "--force-resume", flow=True, env=_prefect_env(tmp_path))
    assert forced.returncode == 0, forced.stderr
    done = load_checkpoint(ckpt)
    assert done["state"]["step"] == 6 and done["made_with"]["train.lr"] == "0.002"


@pytest.mark.fault(
    "Silently wrong", "`samsar train --resume` after the processed dataset changed (one tile fewer)",
    "exit 1, one line naming the checkpoint and `data hash <old> -> <new>`; nothing is trained; the same data "
    "copied elsewhere still resumes (the hash is of the content, not the path)",
)
def test_resume_on_changed_data_is_refused(tiny_project, tiny_processed, tmp_path):
    params = tiny_project({"train": {"epochs": 1}})
    train_variant(params, VARIANT)
    copied = tmp_path / "processed-copy"
    shutil.copytree(tiny_processed, copied)
    check_resumable(tiny_project({"train": {"epochs": 1}, "data": {"processed_dir": str(copied)}}), VARIANT)

    manifest = pd.read_parquet(copied / "manifest.parquet")
    manifest.drop(index=manifest.index[manifest["split"] == "train"][-1]).to_parquet(copied / "manifest.parquet", index=False)
    params = tiny_project({"train": {"epochs": 1}, "data": {"processed_dir": str(copied)}})
    before = tree(params.root / "models")
    line = assert_one_line_error(_train(params.root, "--resume"), str(checkpoint_path(params, VARIANT, 0)), "data hash ",
                                 "--force-resume")
    assert "train." not in line
    assert tree(params.root / "models") == before


@pytest.mark.fault(
    "One-line errors", "`samsar train --resume` with no checkpoint of any seed",
    "exit 1: `<.cache/checkpoints/<variant>/seed0/last.pt>: no checkpoint of any seed of '<variant>' to resume; "
    "train without --resume`; nothing is written",
)
def test_resume_without_checkpoint(tiny_project):
    params = tiny_project()
    assert_one_line_error(_train(params.root, "--resume"), str(checkpoint_path(params, VARIANT, 0)), "train without --resume")
    assert sorted(p.name for p in params.root.iterdir()) == ["params.yaml"]


@pytest.mark.fault(
    "One-line errors", "`samsar train --resume` from a truncated `last.pt`",
    "exit 1: `<last.pt>: unreadable checkpoint, truncated or corrupt; delete it or train without --resume ...`; "
    "the file is kept as it is and nothing is trained",
)
def test_resume_from_a_truncated_checkpoint(tiny_project):
    params = tiny_project()
    ckpt = checkpoint_path(params, VARIANT, 0)
    save_checkpoint(ckpt, {"variant": VARIANT, "seed": 0, "model": {"w": torch.zeros(1000)}})
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    before = tree(params.root)
    assert_one_line_error(_train(params.root, "--resume"), str(ckpt), "truncated or corrupt",
                          "delete it or train without --resume")
    assert tree(params.root) == before


@pytest.mark.fault(
    "One-line errors", "`samsar train --force-resume` where `last.pt` is a checkpoint of another variant",
    "exit 1: `<last.pt>: checkpoint of variant 'lora' seed 0 on base ... cannot resume 'decoder_only' seed 0 ...; "
    "delete it or train without --resume` (not even forced); the file is kept and nothing is trained",
)
def test_resume_from_another_variants_checkpoint(tiny_project):
    params = tiny_project()
    ckpt = checkpoint_path(params, VARIANT, 0)
    save_checkpoint(ckpt, {"variant": "lora", "seed": 0, "base_id": "random-init:0"})
    before = tree(params.root)
    assert_one_line_error(_train(params.root, "--force-resume"), str(ckpt), "variant 'lora' seed 0",
                          "cannot resume 'decoder_only' seed 0", "train without --resume")
    assert tree(params.root) == before


class _Payload:
    """Unpickled, it would create ``marker``: stands for code hidden in a checkpoint."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.fault(
    "Bad input", "`last.pt` holding a pickled Python object (code that would run on load)",
    "exit 1: `<last.pt>: not a samsar checkpoint: it holds pickled Python objects, which are never loaded "
    "(weights_only); delete it ...`; the payload never runs and nothing is trained",
)
def test_resume_from_a_pickle_payload(tiny_project, tmp_path):
    params = tiny_project()
    ckpt = checkpoint_path(params, VARIANT, 0)
    ckpt.parent.mkdir(parents=True)
    marker = tmp_path / "payload-ran"
    torch.save({"variant": VARIANT, "seed": 0, "state": _Payload(marker)}, ckpt)
    before = tree(params.root)
    assert_one_line_error(_train(params.root, "--resume"), str(ckpt), "pickled Python objects", "delete it")
    assert not marker.exists()
    assert tree(params.root) == before


@pytest.mark.fault(
    "Bad input", "`train.epochs: 0` or `-1` (a budget of no steps) beside a trained adapter",
    "exit 2 naming `train.epochs` before anything runs; the adapter, history and checkpoints are byte-identical",
)
def test_zero_step_budget_keeps_the_adapter(tiny_project, tiny_processed):
    params = tiny_project({"train": {"epochs": 1}})
    train_variant(params, VARIANT)
    before = {name: tree(params.root / name) for name in ("models", ".cache")}
    for epochs in (0, -1):
        _training.write_params(params.root, {"data": {"processed_dir": str(tiny_processed)}, "train": {"epochs": epochs}})
        assert_one_line_error(_train(params.root, flow=True), "train.epochs", code=2)
    assert {name: tree(params.root / name) for name in ("models", ".cache")} == before
    assert (params.variant_dir(VARIANT) / "adapter" / "adapter.safetensors").is_file()
