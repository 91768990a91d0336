"""A run interrupted after a checkpoint and resumed ends with the same weights as an uninterrupted one."""

import csv

import pytest
import safetensors.torch
import torch

from samsar.errors import TrainingError
from samsar.training.checkpoint import load_checkpoint, save_checkpoint
from samsar.training.loop import Trainer, checkpoint_path, train_variant


def _adapter(params, variant):
    return safetensors.torch.load_file(params.variant_dir(variant) / "adapter" / "adapter.safetensors")


def _history(params, variant):
    with (params.variant_dir(variant) / "history.csv").open() as f:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]


@pytest.mark.slow
def test_resume_after_injected_failure_matches_uninterrupted_run(tiny_project, tmp_path, monkeypatch):
    variant = "lora"  # trains inside the encoder and the decoder; no feature cache
    reference = tiny_project(root=tmp_path / "reference")
    summary = train_variant(reference, variant)
    assert summary["steps"] == [6], "fixture: 12 training tiles, batch 4, 2 epochs, one seed"

    interrupted = tiny_project(root=tmp_path / "interrupted")
    real_step = Trainer._micro_step
    calls = {"n": 0}

    def failing_step(self, batch, epoch, index):
        calls["n"] += 1
        if calls["n"] == 6:  # step 5 runs unsaved after the checkpoint at step 4 (epoch 1, 1 batch in)
            raise RuntimeError("injected failure")
        return real_step(self, batch, epoch, index)

    monkeypatch.setattr(Trainer, "_micro_step", failing_step)
    with pytest.raises(RuntimeError, match="injected failure"):
        train_variant(interrupted, variant)
    monkeypatch.setattr(Trainer, "_micro_step", real_step)

    saved = load_checkpoint(checkpoint_path(interrupted, variant, 0))
    state = saved["state"]
    assert (state["step"], state["epoch"], state["batches_done"], state["stop_reason"]) == (4, 1, 1, "")
    assert len(state["history"]) == 1  # the validation round of epoch 0
    assert not (interrupted.variant_dir(variant) / "adapter").exists()

    resumed = train_variant(interrupted, variant, resume=True)
    assert resumed["steps"] == summary["steps"]
    expected, got = _adapter(reference, variant), _adapter(interrupted, variant)
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(expected[name], got[name]), name
    assert _history(interrupted, variant) == _history(reference, variant)


def test_resume_refuses_a_checkpoint_of_another_variant(tiny_project):
    params = tiny_project()
    save_checkpoint(checkpoint_path(params, "decoder_only", 0), {"variant": "lora", "seed": 0, "base_id": "random-init:0"})
    with pytest.raises(TrainingError, match="cannot resume"):
        train_variant(params, "decoder_only", resume=True)


def test_resume_without_checkpoint_names_the_file(tiny_project):
    params = tiny_project()
    with pytest.raises(TrainingError, match="last.pt.*train without --resume"):
        train_variant(params, "decoder_only", resume=True)
