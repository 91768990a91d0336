"""Stopping rules and step accounting of the training loop."""

from samsar.training.loop import train_variant


def test_gradient_accumulation_and_early_stopping(tiny_project):
    # lr 0: validation never improves after the first round, so patience 1 stops after round 2;
    # 12 tiles in micro-batches of 2 accumulated by 2 -> 3 optimizer steps per epoch.
    params = tiny_project({"train": {"epochs": 5, "batch_size": 2, "grad_accum": 2, "lr": 0.0,
                                     "early_stopping_patience": 1, "warmup_steps": 0}})
    summary = train_variant(params, "decoder_only")
    assert summary["stop_reason"] == "early_stopping"
    assert summary["epochs_run"] == 2 and summary["best_epoch"] == 0
    assert summary["steps"] == 6


def test_time_budget_stops_after_the_step_that_crosses_it(tiny_project):
    params = tiny_project({"train": {"epochs": 5, "max_seconds": 0.001}})
    summary = train_variant(params, "decoder_only")
    assert summary["stop_reason"] == "max_seconds"
    assert summary["steps"] == 1 and summary["epochs_run"] == 1
    assert (params.variant_dir("decoder_only") / "adapter" / "adapter.json").is_file()
