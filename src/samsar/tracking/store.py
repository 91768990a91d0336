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
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from samsar.config import Params

STORE_DB = Path("mlflow/mlflow.db")
PYFUNC_MODEL_NAME = "model"  # name of the adapter's pyfunc model inside its training run


def project_root(params: Params) -> Path:
    """Root of the project that owns the store: ``$DVC_ROOT`` under DVC, else ``params.root``."""
    return Path(os.environ.get("DVC_ROOT") or params.root).resolve()


def tracking_uri(params: Params) -> str:
    """The tracking URI: ``$MLFLOW_TRACKING_URI``, else params, else the project's SQLite file."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or params.tracking.tracking_uri
    if uri:
        return uri
    db = project_root(params) / STORE_DB
    db.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{db}"


def is_local_store(uri: str) -> bool:
    """True for a SQLite file store (one writer process at a time is safe; see docs/tracking.md)."""
    return uri.startswith("sqlite:")


def artifact_root(params: Params) -> Path:
    """Absolute artifact directory of the local store."""
    return project_root(params) / params.tracking.artifact_dir


def experiment_name(params: Params) -> str:
    """One experiment per dataset."""
    return f"samsar-{params.data.name}"


def model_name(params: Params) -> str:
    """One registered model per dataset."""
    return f"samsar-{params.data.name}"


def client(params: Params) -> MlflowClient:
    """An MLflow client for the project's tracking store (also its model registry)."""
    uri = tracking_uri(params)
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
    """Id of the dataset's experiment, created on first use.

    On the local store its artifact location is the project's ``mlflow/artifacts`` directory;
    on a server the server decides where artifacts go.
    """
    name = experiment_name(params)
    experiment = mlflow_client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = None
    if is_local_store(mlflow_client.tracking_uri):
        root = artifact_root(params)
        root.mkdir(parents=True, exist_ok=True)
        location = root.as_uri()
    try:
        return mlflow_client.create_experiment(name, artifact_location=location)
    except MlflowException:
        # Another process created it between our lookup and create.
        experiment = mlflow_client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def ui_command(params: Params, port: int) -> list[str]:
    """The ``mlflow server`` command line serving the project's store on 127.0.0.1."""
    uri = tracking_uri(params)
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
               "--backend-store-uri", uri]
    if is_local_store(uri):
        root = artifact_root(params)
        root.mkdir(parents=True, exist_ok=True)
        command += ["--default-artifact-root", root.as_uri()]
    return command


def serve_ui(params: Params, port: int = 5000) -> None:
    """Run the MLflow UI on http://127.0.0.1:<port> over the project's store until interrupted."""
    uri = tracking_uri(params)
    if uri.startswith(("http://", "https://")):
        raise SystemExit(f"tracking URI is {uri}: open that server's UI instead of starting one here")
    print(f"MLflow UI for {uri} on http://127.0.0.1:{port} (Ctrl+C stops it)", flush=True)
    try:
        subprocess.run(ui_command(params, port), check=True)
    except KeyboardInterrupt:
        pass
