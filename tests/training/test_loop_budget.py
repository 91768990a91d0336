"""Stopping rules and step accounting of the training loop: the budget is steps, the clock only a guard."""

import pytest

from samsar.training.loop import train_variant


def test_gradient_accumulation_and_early_stopping(tiny_project):
    # lr 1e-30 (no fp32 weight moves): validation never improves after the first round, so patience 1 stops after round 2;
    # 12 tiles in micro-batches of 2 accumulated by 2 -> 3 optimizer steps per epoch.
    params = tiny_project({"train": {"epochs": 5, "batch_size": 2, "grad_accum": 2, "lr": 1e-30,
                                     "early_stopping_patience": 1, "warmup_steps": 0}})
    run = train_variant(params, "decoder_only")["runs"][0]
    assert run["stop_reason"] == "early_stopping"
    assert run["epochs_run"] == 2 and run["best_epoch"] == 0
    assert run["steps"] == 6 and run["step_budget"] == 15


def test_max_steps_ends_training_mid_epoch_and_the_schedule_follows_steps(tiny_project):
    # 3 steps per epoch (12 tiles, batch 4): a budget of 4 steps ends one step into epoch 1.
    params = tiny_project({"train": {"epochs": 5, "max_steps": 4, "warmup_steps": 0, "min_lr": 0.0}})
    summary = train_variant(params, "decoder_only")
    run = summary["runs"][0]
    assert (run["steps"], run["step_budget"], run["stop_reason"], run["cut_short"]) == (4, 4, "max_steps", False)
    history = (params.variant_dir("decoder_only") / "history.csv").read_text().splitlines()
    final_lr = float(history[-1].split(",")[5])
    assert final_lr == pytest.approx(0.0, abs=1e-12), "cosine reaches min_lr exactly at the step budget"


def test_wall_time_guard_marks_the_run_cut_short(tiny_project):
    params = tiny_project({"train": {"epochs": 5, "max_seconds": 0.001}})
    summary = train_variant(params, "decoder_only")
    run = summary["runs"][0]
    assert run["stop_reason"] == "max_seconds" and run["cut_short"] is True and summary["cut_short"] is True
    assert run["steps"] == 1 and run["epochs_run"] == 1
    assert (params.variant_dir("decoder_only") / "adapter" / "adapter.json").is_file()


def test_same_params_give_the_same_weights_whatever_the_clock(tiny_project, tmp_path, monkeypatch):
    """The schedule depends on steps only: a slowed-down clock changes nothing."""
    import time

    import safetensors.torch
    import torch

    first = tiny_project({"train": {"epochs": 2}}, root=tmp_path / "a")
    train_variant(first, "lora")
    real = time.perf_counter
    monkeypatch.setattr(time, "perf_counter", lambda: real() * 50.0)  # every step looks 50x slower
    second = tiny_project({"train": {"epochs": 2}}, root=tmp_path / "b")
    train_variant(second, "lora")
    a = safetensors.torch.load_file(first.variant_dir("lora") / "adapter" / "adapter.safetensors")
    b = safetensors.torch.load_file(second.variant_dir("lora") / "adapter" / "adapter.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_seeds_side_by_side_reproduce_exactly(tiny_project, tmp_path):
    """Two seeds trained in parallel processes, twice: identical weights, and the seeds differ."""
    import safetensors.torch
    import torch

    adapters = []
    for name in ("first", "second"):
        params = tiny_project({"train": {"epochs": 1, "seeds": [3, 4]}}, root=tmp_path / name)
        summary = train_variant(params, "lora")
        assert summary["seeds"] == [3, 4] and summary["steps"] == [3, 3]
        adapters.append({seed: safetensors.torch.load_file(params.variant_dir("lora") / "seeds" / str(seed) / "adapter"
                                                           / "adapter.safetensors") for seed in (3, 4)})
    for seed in (3, 4):
        assert all(torch.equal(adapters[0][seed][k], adapters[1][seed][k]) for k in adapters[0][seed])
    assert not all(torch.equal(adapters[0][3][k], adapters[0][4][k]) for k in adapters[0][3])


def test_seed_threads_depend_on_cores_and_seeds_only(monkeypatch):
    import os

    from samsar.training.loop import seed_threads

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    assert [seed_threads(n) for n in (1, 2, 3, 8, 16)] == [8, 4, 2, 1, 1]
