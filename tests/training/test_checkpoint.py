"""Checkpoint files: weights-only loading and RNG restoration."""

import random

import numpy as np
import pytest
import torch

from samsar.errors import TrainingError
from samsar.training.checkpoint import load_checkpoint, save_checkpoint, set_rng_state


def test_checkpoint_round_trip_restores_rng_and_tensors(tmp_path):
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    path = tmp_path / "ck" / "last.pt"
    save_checkpoint(path, {"step": 7, "model": {"w": torch.arange(3.0)}, "history": [{"epoch": 0, "val_mIoU": 0.5}]})
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(99), np.random.seed(99), torch.manual_seed(99)
    state = load_checkpoint(path)  # weights_only=True inside: fails on pickled objects
    assert state["step"] == 7 and torch.equal(state["model"]["w"], torch.arange(3.0))
    set_rng_state(state["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
    assert not list(path.parent.glob(".*")), "temporary files left behind"


def test_missing_checkpoint_names_the_file(tmp_path):
    with pytest.raises(TrainingError, match="last.pt"):
        load_checkpoint(tmp_path / "last.pt")
