import json
import time

import pandas as pd
import pytest
import yaml
from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

from samsar.tracking import provenance, store
from samsar.tracking.runs import flatten_params, resume_run, training_run, variant_run


def _only_run(params):
    client = store.client(params)
    experiment = client.get_experiment_by_name("samsar-testset")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    return runs[0]


def test_training_run_logs_params_metrics_tags_and_finishes(params, tmp_path):
    with training_run(params, "lora", seed=0) as run:
        for epoch in range(3):
            run.log_metrics({"train_loss": 1.0 / (epoch + 1), "val_mIoU": 0.1 * epoch}, step=epoch)
    logged = _only_run(params)
    assert logged.info.status == "FINISHED"
    assert logged.info.run_name == "lora-seed0"
    assert logged.data.params["train.lr"] == str(params.train.lr)
    assert logged.data.params["variant_options.lora.rank"] == str(params.variant_options.lora.rank)
    assert "root" not in logged.data.params
    tags = logged.data.tags
    assert tags["variant"] == "lora" and tags["backbone"] == "tiny" and tags["seed"] == "0"
    assert logged.data.params["seed"] == "0"
    assert {"git_sha", "data_hash", "base_checkpoint_sha256"} <= tags.keys()
    history = store.client(params).get_metric_history(run.run_id, "val_mIoU")
    assert [(m.step, round(m.value, 6)) for m in history] == [(0, 0.0), (1, 0.1), (2, 0.2)]


def test_failed_run_ends_failed_with_its_error(params):
    with pytest.raises(RuntimeError, match="CUDA out of memory"):
        with training_run(params, "lora", seed=0):
            raise RuntimeError("CUDA out of memory")
    logged = _only_run(params)
    assert logged.info.status == "FAILED"
    assert logged.data.tags["error"] == "RuntimeError: CUDA out of memory"


def test_resume_run_adds_artifacts_to_the_training_run(params, tmp_path):
    with training_run(params, "decoder_only", seed=0) as run:
        pass
    report = tmp_path / "reports" / "decoder_only"
    report.mkdir(parents=True)
    (report / "model_card.md").write_text("# card\n")
    with resume_run(params, run.run_id) as again:
        again.log_metrics({"test_mIoU": 0.5})
        again.log_artifacts(report, "reports")
    client = store.client(params)
    logged = client.get_run(run.run_id)
    assert logged.info.status == "FINISHED"
    assert logged.data.metrics["test_mIoU"] == 0.5
    assert [a.path for a in client.list_artifacts(run.run_id, "reports")] == ["reports/model_card.md"]


def test_disabled_tracking_logs_nothing(tmp_path, make_params):
    params = make_params(tmp_path, tracking={"enabled": False})
    with training_run(params, "lora", seed=0) as run:
        run.log_metrics({"loss": 1.0}, step=0)
        run.log_artifacts(tmp_path)
    assert run.run_id is None
    assert not (tmp_path / "mlflow").exists()


def test_system_metrics_are_sampled(tmp_path, monkeypatch, make_params):
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")
    params = make_params(tmp_path, tracking={"system_metrics": True})
    with variant_run(params, "lora"):  # the parent run samples the machine while the seeds train
        time.sleep(1.0)
    metrics = _only_run(params).data.metrics
    assert any(key.startswith("system/cpu_utilization_percentage") for key in metrics), metrics


def test_long_param_values_are_cut_to_mlflow_limit(params):
    with training_run(params, "lora", seed=0) as run:
        run.log_params({"notes": "x" * (MAX_PARAM_VAL_LENGTH + 100)})
    assert len(_only_run(params).data.params["notes"]) == MAX_PARAM_VAL_LENGTH


def test_flatten_params_uses_dotted_keys_and_json_lists(params):
    flat = flatten_params(params)
    assert flat["data.name"] == "testset"
    assert flat["preprocess.split.test"] == "0.2"
    assert flat["variants"] == '["decoder_only", "lora"]'


def _write_processed(folder, source_root, tile_sha="aaa"):
    folder.mkdir(parents=True)
    pd.DataFrame({"tile_id": ["t0", "t1"], "split": ["train", "test"], "source_file": [f"{source_root}/scene.tif"] * 2,
                  "sha256": [tile_sha, "bbb"]}).to_parquet(folder / "manifest.parquet")
    doc = {"classes": [{"name": "water"}], "tile_size": 64, "notes": [f"read from {source_root}"]}
    (folder / "dataset.json").write_text(json.dumps(doc))


def test_data_hash_is_content_only_whatever_the_checkout_path(params, tmp_path, make_params):
    assert provenance.data_hash(params) == ("unknown", "none")
    _write_processed(tmp_path / "data" / "processed", tmp_path / "data" / "raw")
    digest, source = provenance.data_hash(params)
    assert source == "content" and digest.startswith("sha256:")
    # a lock file from another checkout (md5s over machine paths) does not decide the hash
    lock = {"schema": "2.0", "stages": {"preprocess": {"cmd": "samsar preprocess", "outs": [
        {"path": "data/processed", "hash": "md5", "md5": "abc123.dir"}]}}}
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(lock))
    assert provenance.data_hash(params) == (digest, "content")

    clone = tmp_path / "elsewhere" / "clone"  # the same data in another checkout: other source paths and notes
    _write_processed(clone / "data" / "processed", clone / "data" / "raw")
    assert provenance.data_hash(make_params(clone)) == (digest, "content")

    changed = tmp_path / "changed"  # one tile's content differs
    _write_processed(changed / "data" / "processed", tmp_path / "data" / "raw", tile_sha="ccc")
    assert provenance.data_hash(make_params(changed))[0] != digest


def test_run_tags_carry_the_content_hash(params, tmp_path):
    _write_processed(tmp_path / "data" / "processed", tmp_path / "data" / "raw")
    with training_run(params, "lora", seed=0):
        pass
    tags = _only_run(params).data.tags
    assert tags["data_hash"] == provenance.dataset_hash(params.processed_dir) and tags["data_hash_source"] == "content"


def test_unreachable_tracking_at_failure_keeps_the_original_error(params, monkeypatch):
    def server_down(*args, **kwargs):
        raise ConnectionError("tracking server down")

    with pytest.raises(KeyError, match="the real problem"):
        with training_run(params, "lora", seed=0) as run:
            monkeypatch.setattr(run.client, "log_batch", server_down)
            raise KeyError("the real problem")


def test_runs_carry_source_tags_the_dvc_experiment_and_the_dataset_input(params, tmp_path, monkeypatch):
    import subprocess

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "remote", "add", "origin", "https://token@example.org/team/samsar.git"],
                   check=True)
    _write_processed(tmp_path / "data" / "processed", tmp_path / "data" / "raw")
    monkeypatch.setenv("DVC_STAGE", "train@lora")  # what `dvc exp run` sets for the stage's command
    monkeypatch.setenv("DVC_EXP_NAME", "wider-lora")
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", "0123abcd" * 5)
    with training_run(params, "lora", seed=0) as run:
        pass
    logged = _only_run(params)
    tags = logged.data.tags
    assert tags["mlflow.source.type"] == "JOB" and tags["mlflow.source.name"] == "dvc stage train@lora"
    assert tags["mlflow.user"] and tags["mlflow.source.git.repoURL"] == "https://example.org/team/samsar.git"
    assert tags["dvc.exp_name"] == "wider-lora" and tags["dvc.exp_baseline_rev"] == "0123abcd" * 5
    [dataset_input] = logged.inputs.dataset_inputs
    digest = provenance.dataset_hash(params.processed_dir)
    assert dataset_input.dataset.digest == digest[:36] and dataset_input.dataset.name == "testset"
    assert {t.key: t.value for t in dataset_input.tags}["data_hash"] == digest == tags["data_hash"]
    # the project-relative folder: a worker's temporary clone path is recorded nowhere
    assert json.loads(dataset_input.dataset.source) == {"uri": "data/processed"}
    assert dataset_input.dataset.source_type == "local" and str(tmp_path) not in dataset_input.dataset.source
    assert run.run_id == logged.info.run_id


def test_a_plain_command_is_a_local_source(params, monkeypatch):
    for name in ("DVC_STAGE", "DVC_EXP_NAME", "PREFECT__FLOW_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    with training_run(params, "lora", seed=0):
        pass
    tags = _only_run(params).data.tags
    assert tags["mlflow.source.type"] == "LOCAL" and "dvc.exp_name" not in tags
    assert not _only_run(params).inputs.dataset_inputs  # no processed data yet: nothing to log
