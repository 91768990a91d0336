"""End to end through a real Prefect server: a served deployment runs one variant to the registry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from service_processes import free_port, running

from samsar.config import load_params
from samsar.tracking import store

SERVE = "from pipelines.flows import variant_flow; variant_flow.serve(name='e2e', limit=1)"


def _wait_for_deployment(client, name: str, server: subprocess.Popen, timeout: float):
    from prefect.exceptions import ObjectNotFound

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the serving process exited with code {server.returncode}")
        try:
            return client.read_deployment_by_name(name)
        except ObjectNotFound:
            time.sleep(1)
    raise TimeoutError(f"deployment {name} not registered within {timeout:.0f} s")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_served_deployment_trains_evaluates_and_registers(tmp_path: Path, tiny_project: Path):
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home"), "PREFECT_API_URL": api_url}
    env.pop("MLFLOW_TRACKING_URI", None)
    server_cmd = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui"]
    with running(server_cmd, tmp_path / "prefect-server.log", health_url=f"{api_url}/health", env=env), \
            running([sys.executable, "-c", SERVE], tmp_path / "serve.log", env=env) as serving, \
            temporary_settings({PREFECT_API_URL: api_url}):
        with get_client(sync_client=True) as client:
            _wait_for_deployment(client, "samsar-variant/e2e", serving, timeout=180)
        flow_run = run_deployment(
            "samsar-variant/e2e", parameters={"params_path": str(tiny_project), "variant": "decoder_only"}, timeout=720
        )
        assert flow_run.state.is_completed(), (flow_run.state, (tmp_path / "serve.log").read_text()[-4000:])

    params = load_params(tiny_project)
    client = store.client(params)
    experiment = client.get_experiment_by_name("samsar-e2e")
    (run,) = client.search_runs([experiment.experiment_id], filter_string="tags.run_kind = 'seed'")
    assert run.info.status == "FINISHED" and run.data.tags["variant"] == "decoder_only" and run.data.tags["seed"] == "0"
    champion = client.get_model_version_by_alias("samsar-e2e", "champion")
    assert champion.run_id == run.info.run_id
    assert client.get_model_version_by_alias("samsar-e2e", "challenger").version == champion.version
    assert champion.tags["promotion.decision"] == "promoted"
    test_miou = json.loads(params.metrics_path("decoder_only").read_text())["mIoU"]
    assert float(champion.tags["metric.mIoU"]) == pytest.approx(test_miou)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_all_variants_flow_fills_the_store_and_registry(prefect_server, tiny_project: Path):
    import mlflow
    import numpy as np
    import yaml

    from pipelines.flows import all_variants_flow

    raw = yaml.safe_load(tiny_project.read_text())
    raw["variants"] = ["decoder_only", "lora"]
    tiny_project.write_text(yaml.safe_dump(raw))
    decision = all_variants_flow(str(tiny_project))

    params = load_params(tiny_project)
    client = store.client(params)
    experiment = client.get_experiment_by_name("samsar-e2e")
    runs = {run.data.tags["variant"]: run
            for run in client.search_runs([experiment.experiment_id], filter_string="tags.run_kind = 'seed'")}
    assert sorted(runs) == ["decoder_only", "lora"]
    for variant, run in runs.items():
        assert run.info.status == "FINISHED"
        assert "val_mIoU" in run.data.metrics
        assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"history.csv", "train_summary.json"}
    versions = client.search_model_versions("name='samsar-e2e'")
    assert sorted(v.tags["variant"] for v in versions) == ["decoder_only", "lora"]
    best = max(versions, key=lambda v: float(v.tags["metric.val_mIoU"]))  # validation chooses, test never does
    registered = client.get_registered_model("samsar-e2e")
    assert registered.aliases == {"challenger": best.version, "champion": best.version}
    assert (decision["model"], decision["version"], decision["promoted"]) == ("samsar-e2e", best.version, True)
    assert client.get_model_version("samsar-e2e", best.version).tags["promotion.decision"] == "promoted"

    with store.as_process_default(store.tracking_uri(params)):
        model = mlflow.pyfunc.load_model("models:/samsar-e2e@champion")
    class_map = model.predict(np.random.default_rng(0).gamma(1.0, 1.0, (50, 70)).astype(np.float32))
    assert class_map.shape == (50, 70) and class_map.max() < 3
