"""Fixtures: a throw-away project root with its own SQLite MLflow store; a real MLflow server."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from service_processes import free_port, running

from samsar.config import Params

CLASSES = [
    {"name": "building", "color": [255, 0, 0]},
    {"name": "water", "color": [0, 0, 255]},
    {"name": "background", "color": [0, 0, 0]},
]


def _make_params(root: Path, **overrides) -> Params:
    """Params for a project at ``root`` (tiny model, quick training), with top-level overrides."""
    raw = {
        "root": str(root),
        "data": {"name": "testset", "classes": CLASSES},
        "variants": ["decoder_only", "lora"],
        "tracking": {"system_metrics": False},
        **overrides,
    }
    return Params.model_validate(raw)


@pytest.fixture(autouse=True)
def _no_external_tracking(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.delenv("DVC_ROOT", raising=False)


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory) -> Path:
    """An MLflow SQLite file with its schema created (creating one takes seconds; copying it does not)."""
    from mlflow import MlflowClient

    db = tmp_path_factory.mktemp("empty_store") / "mlflow.db"
    MlflowClient(f"sqlite:///{db}").search_experiments()
    return db


@pytest.fixture
def make_params(empty_store: Path):
    """Factory: ``make_params(root, **top_level_overrides) -> Params``; the project store starts empty."""

    def make(root: Path, **overrides) -> Params:
        params = _make_params(root, **overrides)
        db = root / "mlflow" / "mlflow.db"
        if params.tracking.enabled and not db.exists():
            db.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(empty_store, db)
        return params

    return make


@pytest.fixture
def params(tmp_path: Path, make_params) -> Params:
    return make_params(tmp_path)


@pytest.fixture
def mlflow_server(tmp_path: Path):
    """A real ``mlflow server`` on 127.0.0.1 (SQLite backend in tmp_path); yields its URL, always stopped."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
               "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
               "--artifacts-destination", (tmp_path / "server-artifacts").as_uri()]
    with running(command, tmp_path / "server.log", health_url=f"{url}/health"):
        yield url
