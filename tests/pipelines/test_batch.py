"""Batch mapping through a real Prefect server: ``samsar-map`` spreads scene runs over two process workers,
then a rerun skips every scene."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from affine import Affine
from service_processes import free_port, running

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "inference"))
from predict_helpers import INTENSITY_SCALER, make_adapter, speckle_scene, write_geotiff  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
POOL, GPU_TAG = "map-pool", "gpu"


def _prefect(*args: str, env: dict) -> None:
    subprocess.run([sys.executable, "-m", "prefect", *args], env=env, check=True, capture_output=True, timeout=300)


def _logs(client, flow_run_ids) -> list[str]:
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=list(flow_run_ids))), limit=200)
    return [log.message for log in logs]


def _logs_once(client, flow_run_id, ready, seconds: float = 60) -> list[str]:
    """The run's log messages once ``ready(messages)`` holds (or after ``seconds``): a run's logs reach
    the server in batches, possibly after its final state."""
    deadline = time.monotonic() + seconds
    while not ready(messages := _logs(client, [flow_run_id])) and time.monotonic() < deadline:
        time.sleep(1)
    return messages


def _scene_runs(client, deployment_id):
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    return client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])))


@pytest.mark.timeout(900)
def test_map_flow_spreads_scenes_over_two_workers_then_skips_them(tmp_path: Path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterFlowRunId
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from pipelines.batch import map_flow, map_scene_flow

    scenes, out = tmp_path / "scenes", tmp_path / "out"
    scenes.mkdir()
    for i in range(3):
        write_geotiff(scenes / f"s{i}.tif", speckle_scene(64, 64, seed=i), transform=Affine(10, 0, 500000 + 640 * i, 0, -10, 4600000))
    adapter = make_adapter(tmp_path / "adapter", INTENSITY_SCALER, 64)

    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home"), "PREFECT_API_URL": api_url,
           "PREFECT_WORKER_QUERY_SECONDS": "2", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    server_cmd = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui"]
    # --limit 2: the worker holding the samsar-map run can take one scene, so the other must take the rest.
    worker = [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL, "--type", "process", "--limit", "2"]
    parameters = {"model": str(adapter), "input_path": str(scenes), "output_dir": str(out),
                  "options": {"device": "cpu", "batch_size": 4}, "params_path": str(tmp_path / "no-params.yaml"),
                  "scene_deployment": "samsar-map-scene/test", "poll_seconds": 1.0}
    with running(server_cmd, tmp_path / "server.log", health_url=f"{api_url}/health", env=env), \
            temporary_settings({PREFECT_API_URL: api_url}):
        _prefect("work-pool", "create", POOL, "--type", "process", env=env)
        with get_client(sync_client=True) as client:
            client.create_concurrency_limit(tag=GPU_TAG, concurrency_limit=1)  # one scene on the "GPU" at a time
        for flow_ in (map_flow, map_scene_flow):
            entrypoint = f"pipelines/batch.py:{flow_.fn.__name__}"
            flow_.from_source(source=str(REPO), entrypoint=entrypoint).deploy(name="test", work_pool_name=POOL,
                                                                              print_next_steps=False)
        with running([*worker, "--name", "w0"], tmp_path / "w0.log", env=env), \
                running([*worker, "--name", "w1"], tmp_path / "w1.log", env=env):
            first = run_deployment("samsar-map/test", parameters=parameters, timeout=600, poll_interval=2)
            worker_logs = "".join((tmp_path / f"w{i}.log").read_text()[-3000:] for i in range(2))
            assert first.state.is_completed(), (first.state, worker_logs)
            cogs = sorted(out.glob("s?.tif"))
            assert [p.name for p in cogs] == ["s0.tif", "s1.tif", "s2.tif"]
            assert (out / "mosaic.vrt").is_file() and (out / "areas.csv").is_file()
            snapshot = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in cogs}

            with get_client(sync_client=True) as client:
                scene_deployment = client.read_deployment_by_name("samsar-map-scene/test")
                scene_runs = _scene_runs(client, scene_deployment.id)
                assert len(scene_runs) == 3 and all(run.state.is_completed() for run in scene_runs)
                # Each scene run was started by one worker, and both workers took some. Two workers may
                # both pick a run up; the server lets one start it and the other logs that it aborted.
                consoles = {name: (tmp_path / f"{name}.log").read_text() for name in ("w0", "w1")}
                ran_by = {}
                for run in scene_runs:
                    ran_by[run.name] = [name for name, text in consoles.items()
                                        if f"submitting flow run '{run.id}'" in text and f"Aborted submission of flow run '{run.id}'" not in text]
                assert sorted(ran_by) == ["map-s0", "map-s1", "map-s2"]
                assert all(len(names) == 1 for names in ran_by.values()), ran_by
                assert {names[0] for names in ran_by.values()} == {"w0", "w1"}, ran_by
                # One map-scene task per scene run, under the GPU tag; its limit of 1 kept them one at a time.
                tasks = client.read_task_runs(task_run_filter=TaskRunFilter(
                    flow_run_id=TaskRunFilterFlowRunId(any_=[run.id for run in scene_runs])))
                assert len(tasks) == 3 and all(t.name.startswith("map-scene") and GPU_TAG in t.tags for t in tasks)
                assert all(t.state.is_completed() for t in tasks)
                spans = sorted((t.start_time, t.end_time) for t in tasks)
                assert all(end <= next_start for (_, end), (next_start, _) in zip(spans, spans[1:])), spans
                parent_logs = _logs_once(client, first.id, lambda logs: sum(" mapped: s" in m for m in logs) >= 3)
                assert sum(" mapped: s" in m for m in parent_logs) == 3 and any("0 to go, ETA" in m for m in parent_logs)

            second = run_deployment("samsar-map/test", parameters=parameters, timeout=600, poll_interval=2)
            assert second.state.is_completed(), second.state
            with get_client(sync_client=True) as client:
                assert len(_scene_runs(client, scene_deployment.id)) == 3  # no scene was started again
                parent_logs = _logs_once(client, second.id, lambda logs: sum(" skipped: " in m for m in logs) >= 3)
            assert sorted(m for m in parent_logs if " skipped: " in m) == [
                f"scene {i + 1}/3 skipped: s{i}.tif (done with this model)" for i in range(3)]
            assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(out.glob("s?.tif"))} == snapshot


def test_map_flow_without_scene_deployment_maps_in_its_own_process(prefect_server, tmp_path: Path):
    from pipelines.batch import map_flow

    scenes, out = tmp_path / "scenes", tmp_path / "out"
    scenes.mkdir()
    for i in range(2):
        write_geotiff(scenes / f"s{i}.tif", speckle_scene(64, 64, seed=i), transform=Affine(10, 0, 500000 + 640 * i, 0, -10, 4600000))
    adapter = make_adapter(tmp_path / "adapter", INTENSITY_SCALER, 64)
    kwargs = dict(model=str(adapter), input_path=str(scenes), output_dir=str(out), options={"device": "cpu"},
                  params_path=str(tmp_path / "no-params.yaml"))
    first = map_flow(**kwargs)
    assert [Path(s).name for s in first["mapped"]] == ["s0.tif", "s1.tif"] and first["skipped"] == []
    assert Path(first["mosaic"]).is_file() and Path(first["areas"]).is_file()
    again = map_flow(**kwargs)
    assert again["mapped"] == [] and [Path(s).name for s in again["skipped"]] == ["s0.tif", "s1.tif"]


def test_a_scene_run_says_whether_it_mapped_the_scene_or_found_it_done(prefect_server, tmp_path: Path):
    """The parent of worker scene runs reads each run's status from its final state's message."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterId
    from prefect.client.schemas.sorting import FlowRunSort

    from pipelines.batch import _reported, map_scene_flow

    scene = write_geotiff(tmp_path / "s0.tif", speckle_scene(64, 64), transform=Affine(10, 0, 500000, 0, -10, 4600000))
    adapter = make_adapter(tmp_path / "adapter", INTENSITY_SCALER, 64)
    kwargs = dict(model=str(adapter), scene=str(scene), output_dir=str(tmp_path / "out"), options={"device": "cpu"},
                  params_path=str(tmp_path / "no-params.yaml"))
    first = map_scene_flow(**kwargs, return_state=True)
    again = map_scene_flow(**kwargs)  # called directly, the flow still returns the task's result
    assert first.result()["status"] == "mapped" and again["status"] == "skipped"
    with get_client(sync_client=True) as client:  # what the parent sees through the API
        scene_flow = client.read_flow_by_name("samsar-map-scene")
        runs = client.read_flow_runs(flow_filter=FlowFilter(id=FlowFilterId(any_=[scene_flow.id])),
                                     sort=FlowRunSort.START_TIME_ASC)
    messages = [run.state.message for run in runs][-2:]
    assert messages == ["mapped", "skipped"]
    assert [_reported(m) for m in messages] == ["mapped", "done elsewhere"]
