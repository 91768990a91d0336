"""docs/gpu-workers.md, exactly as written: a Prefect server, a process work pool, a worker, a git
repository and a DVC remote (all local), the `git add` that `samsar remote add` prints and the docs
show (nothing else is committed after the data stages), `prefect deploy` of pipelines/prefect.yaml,
a run of ``samsar-variant/gpu``. Then a run of a branch without dvc.lock fails with the pull step's
error.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import TINY_PROJECT
from service_processes import free_port, running

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

PROJECT = {
    **TINY_PROJECT,
    "data": {**TINY_PROJECT["data"], "inputs": "src/samsar/data/synthetic.py"},
    "pretrain": {"enabled": True, "max_steps": 2, "batch_size": 2,
                 "synthetic": {"n_scenes": 2, "scene_size": 64, "domain": "source", "looks": 8.0, "seed": 1000}},
}


def _run(args: list[str], cwd: Path, env: dict, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def _project(root: Path, env: dict) -> list[str]:
    """A git + DVC repository of the project with the tiny params (code, dvc.yaml and the DVC set-up
    committed, as in the team's repository), its data stages then run."""
    shutil.copytree(REPO / "src" / "samsar", root / "src" / "samsar", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "pipelines", root / "pipelines", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")
    (root / "params.yaml").write_text(yaml.safe_dump(PROJECT))
    (root / ".gitignore").write_text("/mlflow/\n/reports/\n/metrics/\n__pycache__/\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    _run(["git", "init", "-q", "-b", "main"], root, env)
    _run([str(BIN / "dvc"), "init", "-q"], root, env)
    _run(["git", "add", "."], root, env)
    _run([*git, "commit", "-q", "-m", "the project"], root, env)
    _run([str(BIN / "dvc"), "repro", "-q", "preprocess", "pretrain"], root, env)
    return git


def _documented_git_add(printed: str) -> list[str]:
    """The `git add` of step 0 of docs/gpu-workers.md, checked to be the one `samsar remote add` printed."""
    (command,) = re.findall(r"then `(git add [^`]+)`", printed)
    doc = (REPO / "docs" / "gpu-workers.md").read_text()
    step = doc[doc.index("## 0. "):doc.index("## 1. ")]
    assert [line for line in step.splitlines() if line.startswith("git add")] == [command], command
    return shlex.split(command)


def _flow_run_logs(flow_run_id, marker: str, project: Path, env: dict, seconds: float = 60) -> str:
    """``prefect flow-run logs`` once ``marker`` is in them (or after ``seconds``): a run's logs reach the
    server in batches, possibly after its final state."""
    deadline = time.monotonic() + seconds
    while True:
        logs = _run([sys.executable, "-m", "prefect", "flow-run", "logs", str(flow_run_id)], project, env).stdout
        if marker in logs or time.monotonic() > deadline:
            return logs
        time.sleep(2)


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_a_worker_runs_the_documented_procedure(tmp_path: Path, monkeypatch):
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from samsar.config import load_params
    from samsar.io import file_sha256
    from samsar.tracking import registry, store

    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    tracking = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    project, remote = tmp_path / "project", tmp_path / "dvc-remote"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home"), "PREFECT_API_URL": api_url,
           "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "MLFLOW_TRACKING_URI": tracking,
           "SAMSAR_GIT_URL": project.as_uri(), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("SAMSAR_GIT_BRANCH", None)
    env.pop("DVC_ROOT", None)
    project.mkdir()
    git = _project(project, env)

    # The documented set-up: a remote, push, then exactly the printed (and documented) `git add`.
    added = _run([str(BIN / "samsar"), "remote", "add", str(remote)], project, env).stdout
    git_add = _documented_git_add(added)
    _run([str(BIN / "dvc"), "push", "-q"], project, env)
    _run(git_add, project, env)
    staged = _run(["git", "diff", "--cached", "--name-only"], project, env).stdout.split()
    assert sorted(staged) == [".dvc/config", "dvc.lock"], staged  # params.yaml is unchanged since the first commit
    _run([*git, "commit", "-q", "-m", "data and base checkpoint for the workers"], project, env)
    # A branch a worker cannot pull: dvc.lock not committed.
    _run(["git", "checkout", "-q", "-b", "no-lock"], project, env)
    _run(["git", "rm", "-q", "--cached", "dvc.lock"], project, env)
    _run([*git, "commit", "-q", "-m", "forgot dvc.lock"], project, env)
    _run(["git", "checkout", "-q", "-f", "main"], project, env)

    # Experiment artifacts outside the worker's temporary clone (a shared server decides this itself).
    from mlflow import MlflowClient

    (tmp_path / "mlflow").mkdir()
    MlflowClient(tracking).create_experiment("samsar-e2e", artifact_location=(tmp_path / "mlflow-artifacts").as_uri())

    server_cmd = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui"]
    worker_env = {**env, "SAMSAR_GIT_BRANCH": "main"}
    worker_cmd = [sys.executable, "-m", "prefect", "worker", "start", "--pool", "samsar-gpu", "--limit", "1", "--name", "w0"]
    with running(server_cmd, tmp_path / "prefect-server.log", health_url=f"{api_url}/health", env=env), \
            temporary_settings({PREFECT_API_URL: api_url}):
        _run([sys.executable, "-m", "prefect", "work-pool", "create", "samsar-gpu", "--type", "process"], project, env)
        _run([sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--prefect-file", "pipelines/prefect.yaml", "--all"],
             project, env)
        with running(worker_cmd, tmp_path / "worker.log", env=worker_env):
            flow_run = run_deployment("samsar-variant/gpu", parameters={"variant": "decoder_only"}, timeout=1200)
            worker_log = (tmp_path / "worker.log").read_text()[-6000:]
            assert flow_run.state.is_completed(), (flow_run.state, worker_log)
            logs = _flow_run_logs(flow_run.id, "promotion decision", project, env)

            failed = run_deployment("samsar-variant/gpu", parameters={"variant": "decoder_only"}, timeout=600,
                                    job_variables={"env": {"SAMSAR_GIT_BRANCH": "no-lock"}})
            with get_client(sync_client=True) as client:
                failed = client.read_flow_run(failed.id)
            failed_logs = _flow_run_logs(failed.id, "pull step", project, env)

    # samsar's lines: training progress, metrics, the promotion decision.
    assert re.search(r"decoder_only seed 0 epoch \d+: loss [\d.]+, val mIoU", logs), logs[-4000:]
    assert re.search(r"decoder_only seed 0: step 2/2 \(100 %\)", logs)  # a seed's progress line
    assert "train decoder_only: 1 seeds, best val mIoU" in logs
    assert "decoder_only test metrics: mIoU" in logs
    assert "promotion decision: samsar-e2e version 1" in logs

    params = load_params(project / "params.yaml")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking)
    client = store.client(params)
    (version,) = client.search_model_versions("name='samsar-e2e'")
    run = client.get_run(version.run_id)
    experiment = client.get_experiment_by_name("samsar-e2e")
    assert version.tags[registry.GATE_TAG] in ("promoted", "refused")
    assert version.tags["promotion.decision"] == version.tags[registry.GATE_TAG]
    assert version.description.startswith("**decoder_only**")
    # Paths of the worker's temporary clone are recorded nowhere; the base is its project path and sha256.
    assert run.data.tags["base_checkpoint_path"] == "models/base/sam_tiny_base.pth"
    assert run.data.tags["base_checkpoint_sha256"] == file_sha256(project / "models" / "base" / "sam_tiny_base.pth")
    assert "`models/base/sam_tiny_base.pth`" in version.description
    assert experiment.tags[store.EXPERIMENT_KIND_TAG] == store.EXPERIMENT_KIND

    # The branch without dvc.lock: Failed (not Crashed) with the pull step's one line, also in the logs.
    assert failed.state.is_failed(), failed.state
    assert "dvc.lock: not in this checkout" in failed.state.message and "commit dvc.lock" in failed.state.message
    assert "dvc.lock: not in this checkout" in failed_logs
