"""train -> evaluate -> card with MLflow tracking on: one run per seed under a variant run; the selected
seed's run collects figures, the per-tile archive and the card."""

import pytest

from samsar.evaluation.runner import evaluate_variant
from samsar.reporting.card import write_card
from samsar.training.loop import train_variant


@pytest.fixture(autouse=True)
def _project_store_only(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.mark.slow
def test_mlflow_runs_per_seed_grouped_under_the_variant(tiny_project):
    from samsar.tracking import store

    params = tiny_project({"train": {"epochs": 1, "seeds": [0, 1]}, "tracking": {"enabled": True, "system_metrics": False}})
    summary = train_variant(params, "decoder_only")
    run_id = summary["mlflow_run_id"]
    assert run_id == next(r["mlflow_run_id"] for r in summary["runs"] if r["seed"] == summary["selected_seed"])
    evaluate_variant(params, "decoder_only")
    write_card(params, "decoder_only")

    client = store.client(params)
    runs = [client.get_run(r["mlflow_run_id"]) for r in summary["runs"]]
    parents = {r.data.tags.get("mlflow.parentRunId") for r in runs}
    assert len(parents) == 1 and None not in parents
    parent = client.get_run(parents.pop())
    assert parent.info.status == "FINISHED" and parent.data.tags["run_kind"] == "variant"
    assert parent.data.tags["selected_seed"] == str(summary["selected_seed"])
    for seed, run in zip((0, 1), runs):
        assert run.info.status == "FINISHED" and run.data.tags["variant"] == "decoder_only"
        assert run.data.tags["seed"] == str(seed) and run.data.tags["cut_short"] == "False"
        assert [m.step for m in client.get_metric_history(run.info.run_id, "val_mIoU")] == [0]
        assert run.data.metrics["test_mIoU"] > 0 and "test_ignore_background_lenient_mIoU" in run.data.metrics
    assert runs[0].data.metrics["test_mIoU"] != runs[1].data.metrics["test_mIoU"]
    logged = {a.path for folder in ("evaluation", "model_card") for a in client.list_artifacts(run_id, folder)}
    assert {"evaluation/overlays.png", "evaluation/confusion_counts.png", "evaluation/tiles.npz",
            "evaluation/decoder_only.seeds.json", "model_card/model_card.md", "model_card/model_card.html"} <= logged



def test_a_tracked_training_records_its_source_its_dataset_and_strict_metrics(tiny_project, monkeypatch):
    """Standard MLflow source tags, the DVC experiment, the processed dataset as an input whose digest
    is the data hash, and metrics files that are strict JSON."""
    import json

    from samsar.evaluation.runner import seeds_path
    from samsar.tracking import store
    from samsar.tracking.provenance import dataset_hash

    monkeypatch.setenv("DVC_EXP_NAME", "tiny-exp")
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", "f" * 40)
    params = tiny_project({"train": {"epochs": 1, "seeds": [0]}, "tracking": {"enabled": True, "system_metrics": False}})
    summary = train_variant(params, "decoder_only")
    evaluate_variant(params, "decoder_only")

    client = store.client(params)
    seed_run = client.get_run(summary["mlflow_run_id"])
    variant_run = client.get_run(seed_run.data.tags["mlflow.parentRunId"])
    digest = dataset_hash(params.processed_dir)
    for run in (seed_run, variant_run):
        tags = run.data.tags
        assert tags["mlflow.source.type"] == "JOB" and tags["mlflow.source.name"] and tags["mlflow.user"]
        assert "mlflow.source.git.commit" in tags
        assert tags["dvc.exp_name"] == "tiny-exp" and tags["dvc.exp_baseline_rev"] == "f" * 40
        assert tags["data_hash"] == digest
        [dataset_input] = run.inputs.dataset_inputs
        assert dataset_input.dataset.digest == digest[:36]  # MLflow's longest digest; the full hash is a tag
        assert {t.key: t.value for t in dataset_input.tags}["data_hash"] == digest

    def refuse(constant):
        raise ValueError(f"{constant} in a metrics file")

    for path in (params.metrics_path("decoder_only"), seeds_path(params, "decoder_only")):
        json.loads(path.read_text(), parse_constant=refuse)
