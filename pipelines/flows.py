"""Prefect flows: train one variant, run one variant end to end, run all variants in parallel.

Tasks exchange file paths (adapter directory, metrics file, model card), never tensors, so a
task can run in another process or on another machine. Training and evaluation carry the
GPU tag (``pipeline.gpu_tag``); Prefect's tag concurrency limit on it caps how many run at once
(``prefect concurrency-limit create gpu 2`` for two GPUs; created with ``pipeline.gpu_slots``
if missing). GPU tasks never reuse cached results (``NO_CACHE``): their inputs are paths
whose contents change. Failures are retried only when a retry can help (see :func:`is_transient`).
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pydantic
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import TaskRun
from prefect.context import FlowRunContext
from prefect.exceptions import ObjectNotFound
from prefect.futures import wait
from prefect.runtime import task_run as current_task_run
from prefect.settings import PREFECT_API_URL
from prefect.states import State
from prefect.tasks import Task

# A deployment runs this file from a fresh git clone (pipelines/prefect.yaml): make that clone's
# samsar, of the same commit, win over the one installed in the worker's environment.
_CHECKOUT_SRC = Path(__file__).resolve().parents[1] / "src"
if (_CHECKOUT_SRC / "samsar").is_dir() and "samsar" not in sys.modules:
    sys.path.insert(0, str(_CHECKOUT_SRC))

from samsar.config import Params, load_params  # noqa: E402  (after the path set-up)
from samsar.errors import SamsarError, debug_enabled, is_expected  # noqa: E402

# Deterministic failures: running again gives the same error. SamsarError: bad data, params,
# checkpoints... that the user must fix (DataError, ParamsError, TrainingError among them).
PERMANENT_ERRORS = (SamsarError, pydantic.ValidationError, FileNotFoundError, PermissionError)


class _ExpectedErrorsWithoutTraceback(logging.Filter):
    """Prefect logs a failed run with its traceback. An expected error (bad data, params,
    checkpoint, I/O) is reported in one line by the ``samsar`` command, so its run logs keep the
    message and drop the traceback, unless ``SAMSAR_DEBUG`` is set."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and is_expected(record.exc_info[1]) and not debug_enabled():
            record.exc_info, record.exc_text = None, None
        return True


for _run_logger in ("prefect.flow_runs", "prefect.task_runs"):
    logging.getLogger(_run_logger).addFilter(_ExpectedErrorsWithoutTraceback())


class _SubprocessInOwnSession:
    """``subprocess`` as Prefect's server module sees it: the temporary server it starts without a
    ``PREFECT_API_URL`` runs in a session of its own. Ctrl+C in a terminal signals the whole
    foreground process group; a server in that group stops at once, and the interrupted flow run
    cannot be reported (Prefect's client retries for minutes, then fails with a connection error
    in place of the interrupt)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(subprocess, name)

    @staticmethod
    def Popen(*args: Any, **kwargs: Any) -> subprocess.Popen:  # noqa: N802  (stands in for subprocess.Popen)
        return subprocess.Popen(*args, **{"start_new_session": True, **kwargs})


if not PREFECT_API_URL.value():
    from prefect.server.api import server as _prefect_server

    if hasattr(_prefect_server, "subprocess"):  # Prefect's internals: leave a version without it alone
        _prefect_server.subprocess = _SubprocessInOwnSession()


def is_transient(exc: BaseException) -> bool:
    """Whether a retry may succeed: I/O and connection errors, CUDA out of memory.

    Expected failures (:class:`SamsarError`: bad data, params, checkpoints), validation errors and
    missing files are not retried; neither is SIGTERM or Ctrl+C (a crash, not a failure, to Prefect).
    """
    if isinstance(exc, PERMANENT_ERRORS):
        return False
    if isinstance(exc, RuntimeError) and "out of memory" in str(exc):  # torch.cuda.OutOfMemoryError included
        return True
    return isinstance(exc, OSError)  # ConnectionError and TimeoutError are OSErrors


def retry_if_transient(task_: Task, task_run: TaskRun, state: State) -> bool:
    """Prefect ``retry_condition_fn``: retry only :func:`is_transient` failures."""
    exc = state.result(raise_on_failure=False)
    return isinstance(exc, BaseException) and is_transient(exc)


def _configured(task_: Task, params: Params, gpu: bool) -> Task:
    """The task with the retries of ``params.pipeline`` and, for GPU work, the GPU tag."""
    cfg = params.pipeline
    return task_.with_options(
        tags=[cfg.gpu_tag] if gpu else [],
        retries=cfg.retries,
        retry_delay_seconds=cfg.retry_delay_seconds,
    )


@task(name="train", cache_policy=NO_CACHE, retry_condition_fn=retry_if_transient)
def train_task(params_path: str, variant: str, resume: bool = False, force_resume: bool = False) -> str:
    """Train every seed of ``variant``; returns its adapter directory. A retry resumes from the
    checkpoints the failed attempt wrote."""
    from samsar.training.loop import checkpoint_dir, train_variant

    params = load_params(params_path)
    written = any(_written_by_this_flow_run(p) for p in checkpoint_dir(params, variant).glob("seed*/last.pt"))
    train_variant(params, variant, resume=resume or written, force_resume=force_resume)
    return str(params.variant_dir(variant) / "adapter")


def _written_by_this_flow_run(path: Path) -> bool:
    """On a retry: whether ``path`` exists and was written since this flow run started (not a stale one)."""
    flow_run = FlowRunContext.get().flow_run if FlowRunContext.get() else None
    if current_task_run.run_count <= 1 or flow_run is None or flow_run.start_time is None or not path.is_file():
        return False
    return path.stat().st_mtime >= flow_run.start_time.timestamp()


@task(name="evaluate", cache_policy=NO_CACHE, retry_condition_fn=retry_if_transient)
def evaluate_task(params_path: str, variant: str, adapter_dir: str) -> str:
    """Test metrics of the trained adapter; returns the metrics file."""
    from samsar.evaluation.runner import evaluate_variant

    params = load_params(params_path)
    if not (Path(adapter_dir) / "adapter.json").is_file():
        raise FileNotFoundError(f"{adapter_dir}: no adapter.json; the train task did not produce an adapter")
    evaluate_variant(params, variant)
    return str(params.metrics_path(variant))


@task(name="card", cache_policy=NO_CACHE, retry_condition_fn=retry_if_transient)
def card_task(params_path: str, variant: str, metrics_path: str) -> str:
    """Render the model card from the metrics file; returns the card path."""
    from samsar.reporting.card import write_card

    if not Path(metrics_path).is_file():
        raise FileNotFoundError(f"{metrics_path}: no metrics; the evaluate task did not write them")
    return str(write_card(load_params(params_path), variant))


@task(name="register", cache_policy=NO_CACHE, retry_condition_fn=retry_if_transient)
def register_task(params_path: str, variants: list[str]) -> dict[str, Any] | None:
    """Register the evaluated variants (best new one -> challenger) and run the promotion gate."""
    from samsar.tracking.registry import register_and_promote

    decision = register_and_promote(load_params(params_path), variants=variants)
    if decision is None:
        return None
    return {"model": decision.model, "version": decision.version, "promoted": decision.promoted, "reasons": decision.reasons}


def ensure_gpu_limit(params: Params) -> int:
    """The tag concurrency limit of GPU tasks, created with ``pipeline.gpu_slots`` if there is none."""
    tag = params.pipeline.gpu_tag
    with get_client(sync_client=True) as client:
        try:
            return client.read_concurrency_limit_by_tag(tag).concurrency_limit
        except ObjectNotFound:
            client.create_concurrency_limit(tag=tag, concurrency_limit=params.pipeline.gpu_slots)
            return params.pipeline.gpu_slots


@flow(name="samsar-train", flow_run_name="train-{variant}")
def train_flow(params_path: str, variant: str, resume: bool = False, force_resume: bool = False) -> str:
    """Train one variant over all its seeds in one flow run (what the DVC ``train`` stage runs through
    ``samsar train``); returns the adapter dir. SIGTERM or Ctrl+C reaches the caller as
    :class:`~samsar.errors.Interrupted` / KeyboardInterrupt (Prefect marks the runs Crashed)."""
    params = load_params(params_path)
    return _configured(train_task, params, gpu=True)(params_path, variant, resume, force_resume)


@flow(name="samsar-variant", flow_run_name="variant-{variant}")
def variant_flow(params_path: str, variant: str) -> dict[str, Any] | None:
    """Train -> evaluate -> model card -> register/promote one variant; returns the promotion decision."""
    params = load_params(params_path)
    adapter_dir = _configured(train_task, params, gpu=True)(params_path, variant)
    metrics_path = _configured(evaluate_task, params, gpu=True)(params_path, variant, adapter_dir)
    _configured(card_task, params, gpu=False)(params_path, variant, metrics_path)
    return _configured(register_task, params, gpu=False)(params_path, [variant])


@flow(name="samsar-all-variants")
def all_variants_flow(params_path: str, variants: list[str] | None = None) -> dict[str, Any] | None:
    """Every variant (default: params ``variants``) in parallel under the GPU limit, then one registration.

    Variants that fail do not stop the others; the evaluated ones are registered, then the flow
    fails naming the variants that did not finish.
    """
    from samsar.models.variants import VARIANTS

    params = load_params(params_path, known_variants=VARIANTS)
    variants = variants or params.variants
    logger = get_run_logger()
    logger.info("GPU tasks limited to %d at once (tag '%s')", ensure_gpu_limit(params), params.pipeline.gpu_tag)
    train = _configured(train_task, params, gpu=True)
    evaluate = _configured(evaluate_task, params, gpu=True)
    card = _configured(card_task, params, gpu=False)
    cards = {}
    for variant in variants:
        adapter_dir = train.submit(params_path, variant)
        metrics_path = evaluate.submit(params_path, variant, adapter_dir)
        cards[variant] = card.submit(params_path, variant, metrics_path)
    wait(list(cards.values()))
    done = [v for v, future in cards.items() if future.state.is_completed()]
    failed = [v for v in variants if v not in done]
    decision = _configured(register_task, params, gpu=False)(params_path, done) if done else None
    if failed:
        raise RuntimeError(f"variants {failed} did not finish (see their task runs); registered: {done}")
    return decision
