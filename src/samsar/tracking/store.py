"""Where MLflow tracking data lives: the project's SQLite store, or a tracking server.

The default store is ``sqlite:///<root>/mlflow/mlflow.db`` with artifacts under
``<root>/mlflow/artifacts``, absolute paths from the project root: ``$DVC_ROOT`` when DVC runs
the stage (for experiments run in temporary copies, DVC points it at the main repository, so
their runs land in the one project store), else the folder of params.yaml.
``$MLFLOW_TRACKING_URI`` or ``tracking.tracking_uri`` point everything at a server instead.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from samsar.config import Params
from samsar.errors import SamsarError

STORE_DB = Path("mlflow/mlflow.db")
PYFUNC_MODEL_NAME = "model"  # name of the adapter's pyfunc model inside its training run
STOP_GRACE_SECONDS = 5.0  # how long a child server gets between SIGTERM and SIGKILL
# The MLflow UI (3.x) opens an experiment on its model-training view with this tag, not the GenAI one.
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"


class StoreError(SamsarError):
    """The tracking store asked for is not there (reading never creates one) or its server failed."""


def project_root(params: Params) -> Path:
    """Root of the project that owns the store: ``$DVC_ROOT`` under DVC, else ``params.root``."""
    return Path(os.environ.get("DVC_ROOT") or params.root).resolve()


def tracking_uri(params: Params, create: bool = True) -> str:
    """The tracking URI: ``$MLFLOW_TRACKING_URI``, else params, else the project's SQLite file.

    ``create`` False is for reading (predict, the UI, the gate): a SQLite store whose file does
    not exist raises :class:`StoreError` instead of being created empty.
    """
    uri = (os.environ.get("MLFLOW_TRACKING_URI") or params.tracking.tracking_uri
           or f"sqlite:///{project_root(params) / STORE_DB}")
    db = sqlite_path(uri)
    if db is not None and create:
        db.parent.mkdir(parents=True, exist_ok=True)
    return uri if create else existing_store(uri)


def existing_store(uri: str) -> str:
    """``uri``, after checking that a SQLite store's file exists (:class:`StoreError` naming it otherwise)."""
    db = sqlite_path(uri)
    if db is not None and not db.is_file():
        raise StoreError(f"no tracking store at {db}; run `samsar register` first "
                         f"(or point --params / $MLFLOW_TRACKING_URI at the project that has one)")
    return uri


def is_local_store(uri: str) -> bool:
    """True for a SQLite file store (one writer process at a time is safe; see docs/tracking.md)."""
    return uri.startswith("sqlite:")


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:`` URI; None for other stores and in-memory SQLite."""
    if not is_local_store(uri):
        return None
    from sqlalchemy.engine import make_url

    database = make_url(uri).database
    return Path(database).absolute() if database and database != ":memory:" else None


def artifact_root(params: Params) -> Path:
    """Absolute artifact directory of the local store."""
    return project_root(params) / params.tracking.artifact_dir


def experiment_name(params: Params) -> str:
    """One experiment per dataset."""
    return f"samsar-{params.data.name}"


def model_name(params: Params) -> str:
    """One registered model per dataset."""
    return f"samsar-{params.data.name}"


def client(params: Params, create: bool = True) -> MlflowClient:
    """An MLflow client for the project's tracking store (also its model registry); see :func:`tracking_uri`."""
    uri = tracking_uri(params, create)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


_URI_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
_process_defaults_lock = threading.RLock()


@contextlib.contextmanager
def as_process_default(uri: str) -> Iterator[str]:
    """Make ``uri`` MLflow's process-wide tracking and registry URI for the block.

    For MLflow APIs that only use those (``mlflow.pyfunc.log_model``, resolving ``models:/``
    URIs). Restores the previous URIs and the ``MLFLOW_*_URI`` environment variables that MLflow
    sets, so later runs of the same process are not sent to this store; threads take turns.
    """
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    with _process_defaults_lock:
        saved_uris = (tracking_utils._tracking_uri, registry_utils._registry_uri)
        saved_env = {key: os.environ.get(key) for key in _URI_ENV}
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        try:
            yield uri
        finally:
            mlflow.set_tracking_uri(saved_uris[0])
            mlflow.set_registry_uri(saved_uris[1])
            for key, value in saved_env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def ensure_experiment(mlflow_client: MlflowClient, params: Params) -> str:
    """Id of the dataset's experiment, created on first use, tagged ``mlflow.experimentKind`` so
    the MLflow UI opens it on its model-training view.

    On the local store its artifact location is the project's ``mlflow/artifacts`` directory;
    on a server the server decides where artifacts go.
    """
    name = experiment_name(params)
    experiment = mlflow_client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.tags.get(EXPERIMENT_KIND_TAG) is None:
            mlflow_client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        return experiment.experiment_id
    location = None
    if is_local_store(mlflow_client.tracking_uri):
        root = artifact_root(params)
        root.mkdir(parents=True, exist_ok=True)
        location = root.as_uri()
    try:
        return mlflow_client.create_experiment(name, artifact_location=location,
                                               tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
    except MlflowException:
        # Another process created it between our lookup and create.
        experiment = mlflow_client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def ui_command(params: Params, port: int) -> list[str]:
    """The ``mlflow server`` command line serving the project's existing store on 127.0.0.1.

    One worker: the UI serves one local user, and starts and stops in a fraction of the time of four.
    """
    uri = tracking_uri(params, create=False)
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
               "--backend-store-uri", uri]
    if is_local_store(uri):
        command += ["--default-artifact-root", artifact_root(params).as_uri()]
    return command


def serve_ui(params: Params, port: int = 5000) -> None:
    """Run the MLflow UI on http://127.0.0.1:<port> over the project's store until interrupted.

    The server and its workers run in their own process group, stopped with this process:
    on Ctrl+C, SIGTERM (raised as :class:`~samsar.errors.Interrupted`), or when the server exits.
    """
    uri = tracking_uri(params, create=False)
    if uri.startswith(("http://", "https://")):
        raise StoreError(f"tracking URI is {uri}: open that server's UI instead of starting one here")
    _check_port_free(port)
    print(f"MLflow UI for {uri} on http://127.0.0.1:{port} (Ctrl+C stops it)", flush=True)
    with child_group(ui_command(params, port)) as server:
        code = server.wait()
    # Only a signal ends a running UI; mlflow server exits 0 even when it could not bind the port.
    raise StoreError(f"the MLflow UI server for {uri} stopped by itself (exit status {code}; its output is above); "
                     f"if port {port} is in use, pass another --port")


def _check_port_free(port: int) -> None:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds: TIME_WAIT is no conflict
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            raise StoreError(f"port {port} on 127.0.0.1 is in use ({exc.strerror}); pass another --port") from exc


@contextlib.contextmanager
def child_group(command: list[str]) -> Iterator[subprocess.Popen]:
    """Run ``command`` in its own process group for the block; the whole group is stopped after it."""
    process = subprocess.Popen(command, start_new_session=True)
    try:
        yield process
    finally:
        with _signals_deferred():
            stop_group(process)


def stop_group(process: subprocess.Popen, grace: float = STOP_GRACE_SECONDS) -> None:
    """SIGTERM the process group led by ``process``; SIGKILL what is left after ``grace`` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        if _group_ended(process, within=grace):
            return


def _group_ended(process: subprocess.Popen, within: float) -> bool:
    deadline = time.monotonic() + within
    while _group_running(process):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _group_running(process: subprocess.Popen) -> bool:
    """Whether the group's leader or another member still runs. Zombies do not count: a container's
    init may never reap the workers the leader left behind."""
    if process.poll() is None:
        return True
    try:
        os.killpg(process.pid, 0)
    except ProcessLookupError:
        return False
    if not Path("/proc/self/stat").is_file():
        return True  # no procfs: zombie or not, the group is there
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            state, _, pgrp = stat.read_text().rsplit(")", 1)[1].split()[:3]
            if int(pgrp) == process.pid and state != "Z":
                return True
    return False


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM for the block (a second Ctrl+C must not cut a cleanup short)."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
