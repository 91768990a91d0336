"""SIGTERM while training: the seed stops at an optimizer step with a checkpoint, and resuming
from it gives the weights and history of an uninterrupted run; MLflow runs end KILLED."""

import csv
import os
import signal

import pytest
import safetensors.torch
import torch

from samsar.errors import Interrupted, TrainingError
from samsar.training.checkpoint import load_checkpoint
from samsar.training.distributed import distributed_context
from samsar.training.loop import Trainer, TrainState, checkpoint_path, train_variant

VARIANT = "decoder_only"
# 12 training tiles, batch 4, 2 batches per step: 3 batches and 2 steps per epoch, 4 steps in all.
ACCUM = {"train": {"grad_accum": 2}}


class _Unhandled(Exception):
    pass


@pytest.fixture
def sigterm_guard():
    """SIGTERM raises :class:`_Unhandled` unless training handles it (the default would end pytest)."""

    def guard(signum, frame):
        raise _Unhandled(signum)

    previous = signal.signal(signal.SIGTERM, guard)
    yield guard
    signal.signal(signal.SIGTERM, previous)


def _outputs(params):
    adapter = safetensors.torch.load_file(params.variant_dir(VARIANT) / "adapter" / "adapter.safetensors")
    with (params.variant_dir(VARIANT) / "history.csv").open() as f:
        history = [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]
    return adapter, history


@pytest.mark.parametrize("at_batch, saved", [
    (4, (3, 1, 2)),  # mid-accumulation (epoch 1, first batch of step 3): stops once step 3 is complete
    (6, (4, 1, 3)),  # the last batch: step 4 is the budget, epoch 1 still to be validated on resume
])
def test_sigterm_stops_at_a_step_and_resumes_exactly(tiny_project, tmp_path, monkeypatch, sigterm_guard, at_batch, saved):
    reference = tiny_project(ACCUM, root=tmp_path / "reference")
    train_variant(reference, VARIANT)

    params = tiny_project(ACCUM, root=tmp_path / "interrupted")
    real_step = Trainer._micro_step
    calls = {"n": 0}

    def signalled_step(self, batch, epoch, index):
        calls["n"] += 1
        if calls["n"] == at_batch:
            os.kill(os.getpid(), signal.SIGTERM)
        return real_step(self, batch, epoch, index)

    monkeypatch.setattr(Trainer, "_micro_step", signalled_step)
    with pytest.raises(Interrupted) as stopped:
        train_variant(params, VARIANT)
    monkeypatch.setattr(Trainer, "_micro_step", real_step)
    assert stopped.value.signum == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is sigterm_guard, "the previous handler is restored"
    state = load_checkpoint(checkpoint_path(params, VARIANT, 0))["state"]
    assert (state["step"], state["epoch"], state["batches_done"], state["stop_reason"]) == (*saved, "")
    assert not (params.variant_dir(VARIANT) / "adapter").exists()

    train_variant(params, VARIANT, resume=True)
    (expected, expected_history), (got, got_history) = _outputs(reference), _outputs(params)
    assert got_history == expected_history
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(expected[name], got[name]), name


def test_zero_steps_never_replace_an_adapter(tiny_project):
    params = tiny_project()
    adapter = params.variant_dir(VARIANT) / "seeds" / "0" / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter.json").write_text("{}")
    with distributed_context() as ctx:
        trainer = Trainer(params, VARIANT, ctx, 0)
        with pytest.raises(TrainingError, match="trained 0 steps.*train.epochs"):
            trainer._write_outputs(TrainState(), trainer._summary(TrainState()))
    assert [p.name for p in adapter.iterdir()] == ["adapter.json"]


def test_interrupted_runs_end_killed_other_errors_failed(tiny_project, tmp_path, monkeypatch):
    from samsar.tracking import store
    from samsar.tracking.runs import training_run, variant_run

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    params = tiny_project({"tracking": {"enabled": True, "tracking_uri": f"sqlite:///{tmp_path / 'm.db'}",
                                        "system_metrics": False}})
    ids = {}
    with pytest.raises(Interrupted):
        with variant_run(params, VARIANT) as run:
            ids["sigterm"] = run.run_id
            raise Interrupted(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        with training_run(params, VARIANT, 0) as run:
            ids["ctrl-c"] = run.run_id
            raise KeyboardInterrupt
    with pytest.raises(ValueError):
        with training_run(params, VARIANT, 0) as run:
            ids["error"] = run.run_id
            raise ValueError("bad")
    client = store.client(params)
    runs = {key: client.get_run(run_id) for key, run_id in ids.items()}
    assert {key: run.info.status for key, run in runs.items()} == {"sigterm": "KILLED", "ctrl-c": "KILLED", "error": "FAILED"}
    assert all(run.info.end_time is not None for run in runs.values())
    assert runs["sigterm"].data.tags["interrupted_by"] == "SIGTERM" and runs["ctrl-c"].data.tags["interrupted_by"] == "SIGINT"
    assert runs["error"].data.tags["error"] == "ValueError: bad"
