"""pipelines/prefect.yaml declares deployments Prefect can build: real flows, steps and parameters."""

import importlib
from pathlib import Path

import pytest
import yaml
from prefect import Flow
from prefect.utilities.importtools import import_object

REPO = Path(__file__).resolve().parents[2]
SPEC = yaml.safe_load((REPO / "pipelines" / "prefect.yaml").read_text())


@pytest.mark.parametrize("deployment", SPEC["deployments"], ids=lambda d: d["entrypoint"])
def test_deployment_points_at_a_flow_with_its_parameters(deployment):
    path, name = deployment["entrypoint"].split(":")
    assert (REPO / path).is_file()
    flow = getattr(importlib.import_module(path.removesuffix(".py").replace("/", ".")), name)
    assert isinstance(flow, Flow)
    assert set(deployment["parameters"]) <= set(flow.parameters.properties)
    assert deployment["work_pool"]["name"] == "samsar-gpu"


def test_pull_steps_clone_the_code_and_pull_the_data():
    steps = [next(iter(step.items())) for step in SPEC["pull"]]
    for function, _ in steps:
        assert callable(import_object(function))
    names = [function.rsplit(".", 1)[-1] for function, _ in steps]
    assert names == ["git_clone", "set_working_directory", "dvc_pull"]
    assert steps[2][1]["targets"] == ["preprocess", "pretrain"]
