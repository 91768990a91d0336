"""Fixtures: a throw-away project root with its own SQLite MLflow store; a real MLflow server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

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


@pytest.fixture
def make_params():
    """Factory: ``make_params(root, **top_level_overrides) -> Params``."""
    return _make_params


@pytest.fixture
def params(tmp_path: Path) -> Params:
    return _make_params(tmp_path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_http(url: str, process: subprocess.Popen, timeout: float) -> None:
    """Poll ``url`` until it answers 200; fail early if ``process`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with code {process.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


def stop_process_group(process: subprocess.Popen) -> None:
    """Stop a server started with ``start_new_session=True`` and all its workers."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture
def mlflow_server(tmp_path: Path):
    """A real ``mlflow server`` on 127.0.0.1 (SQLite backend in tmp_path); yields its URL, always stopped."""
    port = free_port()
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
               "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
               "--artifacts-destination", (tmp_path / "server-artifacts").as_uri()]
    log = (tmp_path / "server.log").open("w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_http(f"{url}/health", process, timeout=120)
        yield url
    finally:
        stop_process_group(process)
        log.close()
