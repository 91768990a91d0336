"""MLflow runs: one per training of a variant, reopened by evaluate/card to add results.

A run always ends ``FINISHED``, ``FAILED`` (with the error in the ``error`` tag) or, stopped by
SIGTERM or Ctrl+C, ``KILLED`` (``interrupted_by`` tag); it is never left ``RUNNING`` by an exception.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import os
import signal
import time
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.utils.validation import MAX_METRICS_PER_BATCH, MAX_PARAM_VAL_LENGTH, MAX_PARAMS_TAGS_PER_BATCH, MAX_TAG_VAL_LENGTH

import samsar
from samsar.config import Params
from samsar.errors import Interrupted
from samsar.io import write_json
from samsar.tracking import provenance, store
from samsar.tracking.provenance import flatten_params

log = logging.getLogger(__name__)


class RunHandle:
    """Logging into one MLflow run; every method is a no-op when tracking is disabled (``run_id`` None)."""

    def __init__(self, client: MlflowClient | None, run_id: str | None, params: Params) -> None:
        self.client = client
        self.run_id = run_id
        self.params = params

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Log numeric metrics at ``step`` (e.g. the epoch)."""
        if self.run_id is None:
            return
        now = int(time.time() * 1000)
        batch = [Metric(key, float(value), now, step or 0) for key, value in metrics.items()]
        for start in range(0, len(batch), MAX_METRICS_PER_BATCH):
            self.client.log_batch(self.run_id, metrics=batch[start : start + MAX_METRICS_PER_BATCH])

    def log_params(self, values: Mapping[str, Any]) -> None:
        """Log parameters (values stringified and cut to MLflow's length limit)."""
        if self.run_id is None:
            return
        batch = [Param(key, _param_value(value)) for key, value in values.items()]
        for start in range(0, len(batch), MAX_PARAMS_TAGS_PER_BATCH):
            self.client.log_batch(self.run_id, params=batch[start : start + MAX_PARAMS_TAGS_PER_BATCH])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set run tags (values stringified and cut to MLflow's length limit)."""
        if self.run_id is None:
            return
        batch = [RunTag(key, str(value)[:MAX_TAG_VAL_LENGTH]) for key, value in tags.items()]
        for start in range(0, len(batch), MAX_PARAMS_TAGS_PER_BATCH):
            self.client.log_batch(self.run_id, tags=batch[start : start + MAX_PARAMS_TAGS_PER_BATCH])

    def log_artifacts(self, path: Path | str, artifact_path: str | None = None) -> None:
        """Upload a file or a directory's contents under ``artifact_path``."""
        if self.run_id is None:
            return
        path = Path(path)
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path)
        else:
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_adapter_model(self, adapter_dir: Path | str) -> str | None:
        """Log an adapter directory as the run's pyfunc model; returns the model URI."""
        if self.run_id is None:
            return None
        from samsar.tracking.pyfunc import log_adapter_model

        return log_adapter_model(self.params, self.run_id, Path(adapter_dir))


def _param_value(value: Any) -> str:
    text = value if isinstance(value, str) else str(value)
    if len(text) > MAX_PARAM_VAL_LENGTH:
        text = text[: MAX_PARAM_VAL_LENGTH - 3] + "..."
    return text


# Environment variables naming who launched the command: DVC (`dvc repro`, `dvc exp run`) or a
# Prefect worker's flow run. Under any of them the run is a JOB rather than a LOCAL command.
DVC_STAGE, DVC_EXP_NAME, DVC_EXP_BASELINE_REV = "DVC_STAGE", "DVC_EXP_NAME", "DVC_EXP_BASELINE_REV"
JOB_ENV = (DVC_STAGE, DVC_EXP_NAME, "PREFECT__FLOW_RUN_ID")


def source_tags(params: Params) -> dict[str, str]:
    """MLflow's standard source tags (``mlflow.user``, ``mlflow.source.name``/``.type``,
    ``mlflow.source.git.repoURL`` when the checkout has a remote) and, under ``dvc exp run``, the
    experiment's name and baseline revision (``dvc.exp_name``, ``dvc.exp_baseline_rev``)."""
    from mlflow.entities import SourceType
    from mlflow.tracking.context.default_context import DefaultRunContext
    from mlflow.utils.git_utils import get_git_repo_url
    from mlflow.utils.mlflow_tags import MLFLOW_GIT_REPO_URL, MLFLOW_SOURCE_NAME, MLFLOW_SOURCE_TYPE

    tags = DefaultRunContext().tags()  # user, entry point (sys.argv[0]), LOCAL
    if any(os.environ.get(name) for name in JOB_ENV):
        tags[MLFLOW_SOURCE_TYPE] = SourceType.to_string(SourceType.JOB)
    if os.environ.get(DVC_STAGE):
        tags[MLFLOW_SOURCE_NAME] = f"dvc stage {os.environ[DVC_STAGE]}"
    url = get_git_repo_url(str(params.root))  # credentials stripped by MLflow
    if url:
        tags[MLFLOW_GIT_REPO_URL] = url
    if os.environ.get(DVC_EXP_NAME):
        tags["dvc.exp_name"] = os.environ[DVC_EXP_NAME]
        tags["dvc.exp_baseline_rev"] = os.environ.get(DVC_EXP_BASELINE_REV, provenance.UNKNOWN)
    return tags


def log_dataset_input(client: MlflowClient, run_id: str, params: Params, digest: str) -> None:
    """Log the processed dataset (its manifest: one row per tile) as the run's MLflow dataset input.

    MLflow keeps at most 36 characters of a digest, so the dataset's digest is the data hash cut to
    that length; the full hash is the input's ``data_hash`` tag (and the run's ``data_hash`` tag).
    The source is the processed folder relative to the project (``data/processed``), never the
    path of a worker's temporary clone.
    """
    import mlflow.data
    import pandas as pd
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT
    from mlflow.utils.validation import MAX_DATASET_DIGEST_SIZE

    manifest = params.processed_dir / "manifest.parquet"
    if not manifest.is_file() or digest == provenance.UNKNOWN:
        return
    with warnings.catch_warnings():  # MLflow registers two local-file source classes of one name and says so
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted in multiple ways")
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer column")
        source = provenance.project_relative(params, params.processed_dir)
        dataset = mlflow.data.from_pandas(pd.read_parquet(manifest), source=source, name=params.data.name,
                                          digest=digest[:MAX_DATASET_DIGEST_SIZE])
        entity = dataset._to_mlflow_entity()  # infers the schema (warns about integer columns)
    tags = [InputTag(MLFLOW_DATASET_CONTEXT, "training"), InputTag("data_hash", digest)]
    client.log_inputs(run_id, datasets=[DatasetInput(entity, tags=tags)])


def run_tags(params: Params, variant: str) -> dict[str, str]:
    """Tags every training run carries: what was trained, on which code, data and base model, and
    where it was launched from (:func:`source_tags`)."""
    sha = provenance.git_sha(params.root)
    digest, digest_source = provenance.data_hash(params)
    return {
        **source_tags(params),
        "mlflow.runName": variant,
        "variant": variant,
        "backbone": params.model.backbone,
        "dataset": params.data.name,
        "git_sha": sha,
        "mlflow.source.git.commit": sha,
        "data_hash": digest,
        "data_hash_source": digest_source,
        "base_checkpoint_sha256": provenance.base_checkpoint_id(params),
        "base_checkpoint_path": provenance.base_checkpoint_ref(params),  # project-relative: no temporary clone path
        "samsar_version": samsar.__version__,
    }


@contextlib.contextmanager
def variant_run(params: Params, variant: str) -> Iterator[RunHandle]:
    """The parent MLflow run of training ``variant``: groups its per-seed runs and samples system
    metrics while the seeds train. Ends ``FINISHED`` on success, ``KILLED`` when interrupted,
    ``FAILED`` with the ``error`` tag on any other exception."""
    client = store.client(params)
    experiment_id = store.ensure_experiment(client, params)
    tags = {**run_tags(params, variant), "run_kind": "variant", "seeds": json.dumps(params.train.seeds)}
    run = client.create_run(experiment_id, tags=tags, run_name=variant)
    handle = RunHandle(client, run.info.run_id, params)
    with _ending_run(handle), _system_metrics(params, handle):
        handle.log_params(flatten_params(params))
        log_dataset_input(client, handle.run_id, params, tags["data_hash"])
        yield handle


@contextlib.contextmanager
def training_run(params: Params, variant: str, seed: int, parent_run_id: str | None = None) -> Iterator[RunHandle]:
    """A new MLflow run for one seed of ``variant`` (nested under ``parent_run_id``), tagged with the seed.

    Ends ``FINISHED`` on success; on any exception ``FAILED`` with the ``error`` tag, then
    re-raises. With ``tracking.enabled: false`` it yields a handle that logs nothing. The adapter
    is logged as a pyfunc model only when it is registered (``samsar register``).
    """
    if not params.tracking.enabled:
        yield RunHandle(None, None, params)
        return
    client = store.client(params)
    experiment_id = store.ensure_experiment(client, params)
    tags = {**run_tags(params, variant), "mlflow.runName": f"{variant}-seed{seed}", "seed": str(seed), "run_kind": "seed"}
    if parent_run_id:
        tags["mlflow.parentRunId"] = parent_run_id
    run = client.create_run(experiment_id, tags=tags, run_name=tags["mlflow.runName"])
    handle = RunHandle(client, run.info.run_id, params)
    with _ending_run(handle):
        handle.log_params({**flatten_params(params), "seed": seed})
        log_dataset_input(client, handle.run_id, params, tags["data_hash"])
        yield handle


def log_seed_run(params: Params, variant: str, summary: dict, seed_dir: Path, parent_run_id: str | None) -> str | None:
    """Record one finished seed as its own run: per-epoch curves, budget facts, history and summary files.

    Seeds may train in separate processes; logging afterwards from one process keeps a SQLite
    store free of concurrent writers. Returns the run id (None when tracking is off).
    """
    with training_run(params, variant, summary["seed"], parent_run_id) as run:
        with (seed_dir / "history.csv").open() as f:
            for row in csv.DictReader(f):
                run.log_metrics({key: float(row[key]) for key in ("train_loss", "val_mIoU", "lr")}, step=int(row["epoch"]))
        run.set_tags({"cut_short": summary["cut_short"], "stop_reason": summary["stop_reason"], "steps": summary["steps"]})
        run.log_metrics({"best_val_mIoU": summary["best_val_mIoU"] or 0.0, "train_seconds": summary["train_seconds"],
                         "n_trainable_params": summary["n_trainable_params"], "steps": summary["steps"]})
        run.log_artifacts(seed_dir / "history.csv")
        run.log_artifacts(seed_dir / "train_summary.json")
    if run.run_id is not None:
        write_json(seed_dir / RUN_RECORD, {"run_id": run.run_id, "tracking_uri": public_uri(run.client.tracking_uri)})
    return run.run_id


RUN_RECORD = "mlflow_run.json"  # beside a seed's summary: its run and the store that holds it


def public_uri(uri: str) -> str:
    """A tracking URI without the user and password it may carry."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    if "@" not in parts.netloc:
        return uri
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def recorded_store(seeds_dir: Path, run_id: str) -> str | None:
    """The tracking URI that :func:`log_seed_run` recorded for ``run_id`` under ``seeds_dir``, if any."""
    for record in sorted(seeds_dir.glob(f"*/{RUN_RECORD}")):
        try:
            doc = json.loads(record.read_text())
        except (OSError, ValueError):
            continue
        if doc.get("run_id") == run_id:
            return doc.get("tracking_uri")
    return None


@contextlib.contextmanager
def resume_run(params: Params, run_id: str | None) -> Iterator[RunHandle]:
    """Reopen a finished training run to add evaluation results, the model card, figures.

    A ``None`` run id (tracking was off at training) or disabled tracking yields a no-op handle.
    """
    if not params.tracking.enabled or run_id is None:
        yield RunHandle(None, None, params)
        return
    client = store.client(params)
    client.get_run(run_id)  # fails early with MLflow's "run not found" message
    handle = RunHandle(client, run_id, params)
    with _ending_run(handle):
        yield handle


@contextlib.contextmanager
def _ending_run(handle: RunHandle) -> Iterator[None]:
    """End the run ``FINISHED``; ``KILLED`` on KeyboardInterrupt (Ctrl+C, :class:`Interrupted` by
    SIGTERM), ``FAILED`` with the error on any other exception, which is then re-raised."""
    try:
        yield
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            status, tags = RunStatus.KILLED, {"interrupted_by": _signal_name(exc)}
        else:
            status, tags = RunStatus.FAILED, {"error": f"{type(exc).__name__}: {exc}", "error_type": type(exc).__name__}
        try:
            handle.set_tags(tags)
            handle.client.set_terminated(handle.run_id, status=RunStatus.to_string(status))
        except Exception as tracking_exc:  # e.g. the server is the thing that failed: report the original error
            log.warning("could not mark MLflow run %s as %s: %s", handle.run_id, RunStatus.to_string(status), tracking_exc)
        raise
    handle.client.set_terminated(handle.run_id, status=RunStatus.to_string(RunStatus.FINISHED))


def _signal_name(exc: KeyboardInterrupt) -> str:
    return signal.Signals(exc.signum).name if isinstance(exc, Interrupted) else "SIGINT"


@contextlib.contextmanager
def _system_metrics(params: Params, handle: RunHandle) -> Iterator[None]:
    """CPU/GPU/memory/disk/network metrics sampled into the run (``system/*``) while it trains."""
    if not params.tracking.system_metrics:
        yield
        return
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    monitor = SystemMetricsMonitor(handle.run_id, tracking_uri=handle.client.tracking_uri)
    monitor.start()
    try:
        yield
    finally:
        monitor.finish()
