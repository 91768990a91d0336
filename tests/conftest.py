"""For the whole session: temporary files of the code under test (MLflow's SQLite lock files,
``tempfile`` users, the subprocesses tests start) go under pytest's temporary directory, never
loose into the machine's /tmp; so does Prefect's home (the results storage where failed flows
pickle their exceptions, its memo file), never the shell's PREFECT_HOME (the Makefile's
``<repo>/.prefect``)."""

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent  # the environment's dvc and samsar commands

# Prefect settings that would put its files somewhere else than under PREFECT_HOME.
PREFECT_PATH_VARIABLES = ("PREFECT_LOCAL_STORAGE_PATH", "PREFECT_RESULTS_LOCAL_STORAGE_PATH",
                          "PREFECT_MEMO_STORE_PATH", "PREFECT_SERVER_MEMO_STORE_PATH")


@pytest.fixture(scope="session", autouse=True)
def _temporary_files_under_pytest(tmp_path_factory):
    private = tmp_path_factory.mktemp("tmpdir")
    patch = pytest.MonkeyPatch()
    patch.setenv("TMPDIR", str(private))
    patch.setattr(tempfile, "tempdir", str(private))
    yield private
    patch.undo()


@pytest.fixture(scope="session", autouse=True)
def _prefect_home_under_pytest(tmp_path_factory):
    """PREFECT_HOME under pytest's temporary directory for every flow the tests run: in this process
    and in the commands they start (tests that need their own home still set one)."""
    home = tmp_path_factory.mktemp("prefect-home")
    patch = pytest.MonkeyPatch()
    patch.setenv("PREFECT_HOME", str(home))
    for name in PREFECT_PATH_VARIABLES:
        patch.delenv(name, raising=False)
    with contextlib.ExitStack() as stack:
        if "prefect" in sys.modules:  # imported while collecting: its settings were read from the shell's environment
            from prefect.settings import PREFECT_HOME, temporary_settings

            stack.enter_context(temporary_settings({PREFECT_HOME: home}))  # storage and memo paths follow home
        yield home
    patch.undo()


@pytest.fixture
def git_dvc_repo(tmp_path):
    """``make(root)``: a git + DVC repository at ``root`` with a private home, caches and git identity;
    returns ``run(*args, timeout=900) -> stdout``, which runs a command there (``dvc`` is this
    environment's) and fails the test with its output when it fails. Skips without dvc, git or samsar."""
    dvc = BIN / "dvc"
    if not dvc.is_file() or shutil.which("git") is None or not (BIN / "samsar").is_file():
        pytest.skip("dvc, git or the samsar command is not installed")
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("DVC_", "MLFLOW_", "PREFECT_", "GIT_"))}
    env |= {"PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "HOME": str(tmp_path / "home"),
            "XDG_CACHE_HOME": str(tmp_path / "cache"), "XDG_CONFIG_HOME": str(tmp_path / "config"),
            "DVC_SITE_CACHE_DIR": str(tmp_path / "dvc-site"), "DVC_NO_ANALYTICS": "1", "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@example.com"}

    def make(root: Path):
        def run(*args: str, timeout: float = 900) -> str:
            args = tuple(str(dvc) if arg == "dvc" else str(arg) for arg in args)
            result = subprocess.run(args, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
            assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
            return result.stdout

        root.mkdir(parents=True, exist_ok=True)
        run("git", "init", "-q")
        run("dvc", "init", "-q")
        return run

    return make
