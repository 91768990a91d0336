"""train -> evaluate -> card with MLflow tracking on: one run collects curves, test metrics, figures, card."""

import pytest

from samsar.evaluation.runner import evaluate_variant
from samsar.reporting.card import write_card
from samsar.training.loop import train_variant


@pytest.fixture(autouse=True)
def _project_store_only(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.mark.slow
def test_one_mlflow_run_collects_training_evaluation_and_card(tiny_project):
    from samsar.tracking import store

    params = tiny_project({"train": {"epochs": 1}, "tracking": {"enabled": True, "system_metrics": False}})
    summary = train_variant(params, "decoder_only")
    run_id = summary["mlflow_run_id"]
    assert run_id
    evaluate_variant(params, "decoder_only")
    write_card(params, "decoder_only")

    client = store.client(params)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["variant"] == "decoder_only"
    assert [m.step for m in client.get_metric_history(run_id, "val_mIoU")] == [0]
    assert run.data.metrics["test_mIoU"] > 0 and "test_ignore_background_lenient_mIoU" in run.data.metrics
    logged = {a.path for folder in ("evaluation", "model_card") for a in client.list_artifacts(run_id, folder)}
    assert {"evaluation/overlays.png", "evaluation/confusion_counts.png", "model_card/model_card.md",
            "model_card/model_card.html"} <= logged
