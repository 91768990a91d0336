"""Flows under a Prefect test server, with the heavy stages replaced by recorders.

What is checked is the orchestration: which calls happen, with which paths, what is retried.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pydantic
import pytest
import torch
import yaml

from pipelines import flows
from samsar.config import ParamsError, load_params
from samsar.data.errors import DataError
from samsar.io import write_json, write_text
from samsar.training.loop import checkpoint_path


@pytest.mark.parametrize(
    ("exc", "retried"),
    [
        (ConnectionError("tracking server unreachable"), True),
        (TimeoutError("read timed out"), True),
        (OSError("NFS hiccup"), True),
        (RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"), True),
        (torch.cuda.OutOfMemoryError("CUDA out of memory."), True),
        (DataError("data/processed/manifest.parquet: column split missing"), False),
        (ParamsError("params.yaml: invalid parameters"), False),
        (FileNotFoundError("models/base/sam_tiny_base.pth"), False),
        (RuntimeError("mat1 and mat2 shapes cannot be multiplied"), False),
        (ValueError("bad"), False),
    ],
)
def test_only_transient_failures_are_retried(exc, retried):
    assert flows.is_transient(exc) is retried


def test_pydantic_validation_error_is_not_retried():
    class Model(pydantic.BaseModel):
        x: int

    with pytest.raises(pydantic.ValidationError) as info:
        Model(x="not a number")
    assert not flows.is_transient(info.value)


class Recorder:
    """Stand-in stages writing the files the real ones write, and recording their calls."""

    def __init__(self, fail: dict[str, list[BaseException]] | None = None, checkpoint_before_failing: bool = False):
        self.calls: list[tuple] = []
        self.fail = fail or {}
        self.checkpoint_before_failing = checkpoint_before_failing

    def _maybe_fail(self, key: str) -> None:
        if self.fail.get(key):
            raise self.fail[key].pop(0)

    def train_variant(self, params, variant, resume=False, force_resume=False):
        self.calls.append(("train", variant, resume))
        if self.checkpoint_before_failing:
            write_text(checkpoint_path(params, variant, 0), "epoch 1")
        self._maybe_fail(f"train:{variant}")
        write_json(params.variant_dir(variant) / "adapter" / "adapter.json", {"method": variant})
        return {"mlflow_run_id": None}

    def evaluate_variant(self, params, variant):
        self.calls.append(("evaluate", variant))
        write_json(params.metrics_path(variant), {"mIoU": 0.5})
        return {"mIoU": 0.5}

    def write_card(self, params, variant):
        self.calls.append(("card", variant))
        path = params.report_dir(variant) / "model_card.md"
        write_text(path, "# card\n")
        return path

    def register_heads(self, params, variants=None):
        self.calls.append(("register", tuple(variants)))
        return {}

    def install(self, stage) -> "Recorder":
        stage("samsar.training.loop", "train_variant", self.train_variant)
        stage("samsar.evaluation.runner", "evaluate_variant", self.evaluate_variant)
        stage("samsar.reporting.card", "write_card", self.write_card)
        stage("samsar.tracking.registry", "register_heads", self.register_heads)
        return self


def test_train_flow_retries_a_transient_failure_by_resuming(prefect_server, params_file, stage):
    recorder = Recorder(fail={"train:lora": [ConnectionError("mlflow server restarting")]},
                        checkpoint_before_failing=True).install(stage)
    adapter_dir = flows.train_flow(str(params_file), "lora")
    assert recorder.calls == [("train", "lora", False), ("train", "lora", True)]
    assert Path(adapter_dir) == params_file.parent / "models" / "lora" / "adapter"


def test_retry_starts_over_without_a_fresh_checkpoint(prefect_server, params_file, stage):
    stale = checkpoint_path(load_params(params_file), "lora", 0)
    write_text(stale, "from an earlier training")
    os.utime(stale, (0, 0))
    recorder = Recorder(fail={"train:lora": [OSError("disk hiccup")]}).install(stage)
    flows.train_flow(str(params_file), "lora")
    assert recorder.calls == [("train", "lora", False), ("train", "lora", False)]


def test_train_flow_does_not_retry_bad_data(prefect_server, params_file, stage):
    recorder = Recorder(fail={"train:lora": [DataError("manifest.parquet: no test tiles")]}).install(stage)
    with pytest.raises(DataError, match="no test tiles"):
        flows.train_flow(str(params_file), "lora")
    assert recorder.calls == [("train", "lora", False)]


def test_variant_flow_passes_paths_from_stage_to_stage(prefect_server, params_file, stage, monkeypatch):
    recorder = Recorder().install(stage)
    seen = {}
    original_card = flows.card_task.fn

    def spy_card(params_path, variant, metrics_path):
        seen["metrics_path"] = metrics_path
        return original_card(params_path, variant, metrics_path)

    monkeypatch.setattr(flows.card_task, "fn", spy_card)
    flows.variant_flow(str(params_file), "decoder_only")
    assert recorder.calls == [("train", "decoder_only", False), ("evaluate", "decoder_only"),
                              ("card", "decoder_only"), ("register", ("decoder_only",))]
    assert seen["metrics_path"] == str(load_params(params_file).metrics_path("decoder_only"))
    assert json.loads(Path(seen["metrics_path"]).read_text()) == {"mIoU": 0.5}


def test_all_variants_flow_registers_finished_variants_and_reports_failed_ones(prefect_server, params_file, stage):
    recorder = Recorder(fail={"train:lora": [DataError("lora: bad tiles")]}).install(stage)
    with pytest.raises(RuntimeError, match=r"variants \['lora'\] did not finish"):
        flows.all_variants_flow(str(params_file))
    assert ("register", ("decoder_only",)) in recorder.calls
    assert ("evaluate", "lora") not in recorder.calls
    assert [c for c in recorder.calls if c[0] == "train"].count(("train", "lora", False)) == 1


def test_all_variants_flow_creates_the_gpu_limit_once(prefect_server, params_file, stage):
    from prefect.client.orchestration import get_client

    Recorder().install(stage)
    flows.all_variants_flow(str(params_file), variants=["decoder_only"])
    with get_client(sync_client=True) as client:
        assert client.read_concurrency_limit_by_tag("gpu").concurrency_limit == 1


def _with_gpu_tag(params_file: Path, tag: str) -> None:
    raw = yaml.safe_load(params_file.read_text())
    raw["pipeline"]["gpu_tag"] = tag
    params_file.write_text(yaml.safe_dump(raw))


def test_an_existing_gpu_limit_is_kept(prefect_server, params_file):
    from prefect.client.orchestration import get_client

    _with_gpu_tag(params_file, "gpu-4x")
    params = load_params(params_file)
    with get_client(sync_client=True) as client:
        client.create_concurrency_limit(tag="gpu-4x", concurrency_limit=4)
    assert flows.ensure_gpu_limit(params.pipeline) == 4


def test_train_and_evaluate_carry_the_gpu_tag_other_tasks_do_not(prefect_server, params_file, stage):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import TaskRunSort

    _with_gpu_tag(params_file, "gpu-tagged")
    Recorder().install(stage)
    state = flows.all_variants_flow(str(params_file), return_state=True)
    assert state.is_completed()
    with get_client(sync_client=True) as client:
        task_runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id])),
            sort=TaskRunSort.EXPECTED_START_TIME_ASC, limit=50,
        )
    tags = {(run.name.rsplit("-", 1)[0], "gpu-tagged" in run.tags) for run in task_runs}
    assert tags == {("train", True), ("evaluate", True), ("card", False), ("register", False)}
    assert len(task_runs) == 2 * 3 + 1
