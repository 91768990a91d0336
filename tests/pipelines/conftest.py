"""Fixtures: a Prefect test server for the session and a small project with stand-in stages."""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path

import pytest
import yaml

PARAMS = {
    "data": {
        "name": "pipetest",
        "classes": [{"name": "water", "color": [0, 0, 255]}, {"name": "background", "color": [0, 0, 0]}],
    },
    "variants": ["decoder_only", "lora"],
    "tracking": {"system_metrics": False},
    "pipeline": {"retries": 2, "retry_delay_seconds": 0},
}


@pytest.fixture(scope="session")
def prefect_server():
    """Flows in these tests run against one temporary Prefect server (its start-up takes a while)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def params_file(tmp_path: Path) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(PARAMS))
    return path


@pytest.fixture
def stage(monkeypatch):
    """``stage("samsar.training.loop", "train_variant", fake)``: replace one stage function.

    Uses the real module when it exists, else a stand-in module (for pieces still being built).
    """

    def replace(module_name: str, attribute: str, fake) -> None:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError:
            module = types.ModuleType(module_name)
            monkeypatch.setitem(sys.modules, module_name, module)
        monkeypatch.setattr(module, attribute, fake, raising=False)

    return replace
