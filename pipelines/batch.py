"""Prefect flows that map a model over many scenes (what ``samsar predict --input DIR_OR_LIST`` does locally).

``samsar-map`` lists the scenes, checks them and the output folder, skips the scenes already done
with the same model (:mod:`samsar.inference.batch`) and runs one ``map-scene`` task per remaining
scene under the GPU tag (``pipeline.gpu_tag``). With ``scene_deployment`` (a deployment of
``samsar-map-scene``, e.g. ``samsar-map-scene/gpu``) each scene is a flow run of its own, so the
work pool's workers share the scenes; without it the tasks run in this flow run's process. When
every scene is done it writes ``mosaic.vrt`` and ``areas.csv``. Scene paths and the output folder
must be on storage every worker sees.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.futures import as_completed
from prefect.runtime import flow_run as current_flow_run
from prefect.states import Completed, State

# First: on a deployment's fresh clone, importing flows puts that clone's samsar first on sys.path;
# it also installs the run-log filter of expected errors.
from pipelines.flows import configured, ensure_gpu_limit, retry_if_transient
from samsar.config import Params, PipelineConfig, load_params
from samsar.errors import one_line
from samsar.inference.batch import (
    BatchError, BatchProgress, adapter_sha256, check_one_crs, check_output_dir, finish_batch, list_scenes, map_scene,
    plan_scene, scene_settings,
)
from samsar.inference.predict import resolve_model

__all__ = ["map_flow", "map_scene_flow", "map_scene_task"]


def _params(params_path: str) -> Params | None:
    """The project's params when the file exists (base checkpoint, registry store, GPU tag), else None."""
    return load_params(params_path, check_inputs=False) if Path(params_path).is_file() else None


def _pipeline(params: Params | None) -> PipelineConfig:
    return params.pipeline if params is not None else PipelineConfig()


@task(name="map-scene", cache_policy=NO_CACHE, retry_condition_fn=retry_if_transient)
def map_scene_task(model: str, scene: str, output_dir: str, model_sha: str | None, options: dict[str, Any],
                   overwrite: bool, params_path: str) -> dict[str, Any]:
    """Map one scene unless done with this model; returns its status and seconds."""
    outcome = map_scene(model, Path(scene), Path(output_dir), model_sha=model_sha, params=_params(params_path),
                        overwrite=overwrite, **options)
    get_run_logger().info("%s: %s in %.1f s", Path(scene).name, outcome.status, outcome.seconds)
    return {"scene": scene, "status": outcome.status, "seconds": outcome.seconds}


def _scene_run_name() -> str:
    return f"map-{Path(current_flow_run.parameters['scene']).stem}"


def _reported(status: str | None) -> str:
    """How the progress line names a scene's outcome: ``skipped`` means another run mapped it meanwhile."""
    return {"mapped": "mapped", "skipped": "done elsewhere"}.get(status or "", "finished")


@flow(name="samsar-map-scene", flow_run_name=_scene_run_name)
def map_scene_flow(model: str, scene: str, output_dir: str, model_sha: str | None = None,
                   options: dict[str, Any] | None = None, overwrite: bool = False,
                   params_path: str = "params.yaml") -> State:
    """One scene of a ``samsar-map`` run, in a flow run of its own (on whichever worker takes it).

    Its result is :func:`map_scene_task`'s; the Completed state's message is the scene's status
    (``mapped`` or ``skipped``), which the parent run reads without needing persisted results."""
    result = configured(map_scene_task, _pipeline(_params(params_path)), gpu=True)(
        model, scene, output_dir, model_sha, options or {}, overwrite, params_path)
    return Completed(message=result["status"], data=result)


@flow(name="samsar-map")
def map_flow(model: str, input_path: str, output_dir: str, overwrite: bool = False, options: dict[str, Any] | None = None,
             params_path: str = "params.yaml", scene_deployment: str | None = None,
             poll_seconds: float = 5.0) -> dict[str, Any]:
    """Map ``model`` over the scenes of ``input_path`` (folder or ``.txt`` list) into ``output_dir``; returns
    the scenes mapped and skipped and the mosaic and area table. ``options`` go to ``predict_scene``
    (batch_size, overlap, confidence, device, boxes). Conflicting earlier outputs fail the run before
    any scene starts; scenes that fail do not stop the others, and the run then fails naming them."""
    logger = get_run_logger()
    params = _params(params_path)
    cfg = _pipeline(params)
    options = options or {}
    scenes = list_scenes(Path(input_path))
    out = Path(output_dir)
    check_output_dir(Path(input_path), out, scenes)
    check_one_crs(scenes)
    with tempfile.TemporaryDirectory(prefix="samsar-model-") as download_dir:
        adapter = resolve_model(model, params, Path(download_dir))
        model_sha = adapter_sha256(adapter)
        settings = scene_settings(options)
        todo = [s for s in scenes if plan_scene(s, out, model_sha, settings, overwrite)[0] == "todo"]
        logger.info("%d scenes: %d to map, %d already done with this model (sha256 %s)",
                    len(scenes), len(todo), len(scenes) - len(todo), model_sha[:12])
        progress = BatchProgress(len(scenes), len(todo), logger.info)
        for scene in scenes:
            if scene not in todo:
                progress.skipped(scene)
        if todo:
            logger.info("GPU tasks limited to %d at once (tag '%s')", ensure_gpu_limit(cfg), cfg.gpu_tag)
        if scene_deployment:
            failed = _run_on_workers(scene_deployment, todo, model, out, model_sha, options, overwrite, params_path,
                                     progress, poll_seconds)
        else:
            failed = _run_here(cfg, todo, str(adapter), out, model_sha, options, overwrite, params_path, progress)
    if failed:
        first, reason = next(iter(failed.items()))
        raise BatchError(f"{first}: {reason} ({len(failed)} of {len(todo)} scenes failed, see their runs); "
                         f"fix it and run again: the scenes done are skipped")
    mosaic, areas = finish_batch(out, scenes)
    logger.info("wrote %s and %s over %d scenes", mosaic, areas, len(scenes))
    return {"mapped": [str(s) for s in todo], "skipped": [str(s) for s in scenes if s not in todo],
            "mosaic": str(mosaic), "areas": str(areas)}


def _run_here(cfg: PipelineConfig, todo: list[Path], adapter: str, out: Path, model_sha: str, options: dict[str, Any],
              overwrite: bool, params_path: str, progress: BatchProgress) -> dict[Path, str]:
    """One task per scene in this process (the task runner's threads), each under the GPU tag."""
    gpu_task = configured(map_scene_task, cfg, gpu=True)
    futures = {gpu_task.submit(adapter, str(s), str(out), model_sha, options, overwrite, params_path): s for s in todo}
    failed = {}
    for future in as_completed(list(futures)):
        scene = futures[future]
        try:
            result = future.result()
        except Exception as exc:  # reported with the others at the end; the task run has the traceback
            failed[scene] = one_line(exc)
            continue
        progress.done(scene, _reported(result["status"]), result["seconds"])
    return failed


def _run_on_workers(deployment: str, todo: list[Path], model: str, out: Path, model_sha: str, options: dict[str, Any],
                    overwrite: bool, params_path: str, progress: BatchProgress, poll_seconds: float) -> dict[Path, str]:
    """One ``samsar-map-scene`` flow run per scene, all scheduled at once so that every worker of the
    pool takes some; waits for them all."""
    from prefect.deployments import run_deployment

    runs = {}
    for scene in todo:
        parameters = dict(model=model, scene=str(scene), output_dir=str(out), model_sha=model_sha, options=options,
                          overwrite=overwrite, params_path=params_path)
        runs[run_deployment(deployment, parameters=parameters, timeout=0, as_subflow=True).id] = scene
    failed = {}
    with get_client(sync_client=True) as client:
        while runs:
            time.sleep(poll_seconds)
            for run_id, scene in list(runs.items()):
                run = client.read_flow_run(run_id)
                if run.state is None or not run.state.is_final():
                    continue
                del runs[run_id]
                if run.state.is_completed():
                    progress.done(scene, _reported(run.state.message), run.total_run_time.total_seconds())
                else:
                    failed[scene] = f"flow run {run.name} ended {run.state.name}: {run.state.message or ''}".strip()
    return failed
