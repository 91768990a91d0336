"""Starting and stopping server processes (MLflow, Prefect) in tests."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from samsar.tracking.store import stop_group


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


@contextlib.contextmanager
def running(command: list[str], log_path: Path, health_url: str | None = None, env: dict | None = None,
            timeout: float = 180) -> Iterator[subprocess.Popen]:
    """Run ``command`` (output to ``log_path``) for the block, waiting for ``health_url`` first; always stopped."""
    with log_path.open("w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            if health_url:
                wait_for_http(health_url, process, timeout)
            yield process
        finally:
            stop_group(process)  # the server and all its workers
