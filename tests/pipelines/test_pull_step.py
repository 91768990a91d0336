"""`samsar remote add` and the worker's pull step: what is missing is said in one line, with the fix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipelines import steps
from samsar.remote import RemoteError, add_remote, default_remote, remotes


def _dvc_repo(root: Path) -> Path:
    root.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=root, check=True)
    return root


def test_remote_add_sets_the_default_and_refuses_to_replace_another(tmp_path, monkeypatch):
    repo = _dvc_repo(tmp_path / "repo")
    elsewhere = tmp_path / "elsewhere" / "cwd"
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)  # a relative path is taken from the repository (--root), not the CWD, then stored absolute
    message = add_remote(repo, "../store")
    assert remotes(repo) == {"samsar": str((tmp_path / "store").resolve())} and default_remote(repo) == "samsar"
    # only paths that exist after `dvc repro preprocess pretrain`: git adds nothing if one pathspec matches nothing
    assert "then `git add dvc.lock .dvc/config params.yaml` (and `git add results/` once" in message
    assert "already the default" in add_remote(repo, str((repo / "../store").resolve()))
    with pytest.raises(RemoteError, match="pass --force") as error:
        add_remote(repo, "s3://bucket/samsar")
    assert "\n" not in str(error.value)
    assert remotes(repo)["samsar"] == str((repo / "../store").resolve())  # unchanged
    add_remote(repo, "s3://bucket/samsar", force=True)
    assert remotes(repo)["samsar"] == "s3://bucket/samsar"


def test_remote_add_outside_a_dvc_repository_names_the_fix(tmp_path):
    with pytest.raises(RemoteError, match="dvc init"):
        add_remote(tmp_path, "/srv/dvc")


def test_pull_without_dvc_lock_or_remote_names_the_fix(tmp_path, monkeypatch, capsys):
    repo = _dvc_repo(tmp_path / "repo")
    monkeypatch.delenv("PREFECT__FLOW_RUN_ID", raising=False)
    with pytest.raises(RemoteError, match=r"dvc.lock: not in this checkout.*commit dvc.lock"):
        steps.dvc_pull(directory=str(repo))
    assert "pull step: " in capsys.readouterr().err
    (repo / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")
    with pytest.raises(RemoteError, match=r"no default DVC remote; run `samsar remote add <url>`"):
        steps.dvc_pull(directory=str(repo))


def test_a_failing_dvc_pull_shows_dvc_error_in_the_flow_run(prefect_server, tmp_path, monkeypatch):
    """DVC's own error (here: nothing was ever pushed to the remote) is the run's Failed message and a log line."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect import flow

    repo = _dvc_repo(tmp_path / "repo")
    (repo / "data.txt").write_text("tiles")
    subprocess.run([sys.executable, "-m", "dvc", "add", "-q", "data.txt"], cwd=repo, check=True)
    (repo / "dvc.yaml").write_text("stages:\n  copy:\n    cmd: cp data.txt out.txt\n    deps: [data.txt]\n    outs: [out.txt]\n")
    subprocess.run([sys.executable, "-m", "dvc", "repro", "-q"], cwd=repo, check=True)
    add_remote(repo, str(tmp_path / "empty-remote"))
    (repo / "out.txt").unlink()
    subprocess.run([sys.executable, "-m", "dvc", "gc", "-w", "-f", "-q"], cwd=repo, check=False)
    for cached in (repo / ".dvc" / "cache").rglob("*"):
        if cached.is_file():
            cached.unlink()

    @flow
    def placeholder() -> None:
        pass

    with get_client(sync_client=True) as client:
        deployment_free_run = client.create_flow_run(placeholder)
    monkeypatch.setenv("PREFECT__FLOW_RUN_ID", str(deployment_free_run.id))
    with pytest.raises(RemoteError) as error:
        steps.dvc_pull(targets="copy", directory=str(repo))
    message = str(error.value)
    assert "\n" not in message and "remote 'samsar'" in message and "dvc push" in message
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(deployment_free_run.id).state
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[deployment_free_run.id])))
    assert state.is_failed() and state.message == f"pull step: {message}"
    assert [log.message for log in logs] == [f"pull step: {message}"]
