"""Prefect flows: train one variant, run one variant end to end, run all variants in parallel.

Tasks exchange file paths (adapter directory, metrics file, model card), never tensors, so a
task can run in another process or on another machine. Training and evaluation carry the
GPU tag (``pipeline.gpu_tag``); Prefect's tag concurrency limit on it caps how many run at once
(``prefect concurrency-limit create gpu 2`` for two GPUs; created with ``pipeline.gpu_slots``
if missing). GPU tasks never reuse cached results (``NO_CACHE``): their inputs are paths
whose contents change. Failures are retried only when a retry can help (see :func:`is_transient`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydantic
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import TaskRun
from prefect.context import FlowRunContext, TaskRunContext
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

from samsar.config import PipelineConfig, load_params  # noqa: E402  (after the path set-up)
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


SAMSAR_LOGGER = "samsar"
OUTPUT_LOGGER = "samsar.output"  # lines samsar and its child processes print, as flow-run logs
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_PUMP_JOIN_SECONDS = 10.0  # after the flow: how long a child that still holds the pipe may keep it


class _InFlowRun(logging.Filter):
    """Give records logged outside a flow or task run context (other threads) this flow run's id, so
    Prefect's API handler files them under it instead of warning and dropping them."""

    def __init__(self, flow_run_id: str) -> None:
        super().__init__()
        self.flow_run_id = flow_run_id

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "flow_run_id", None) is None and FlowRunContext.get() is None and TaskRunContext.get() is None:
            record.flow_run_id = self.flow_run_id
        return True


def _fileno(stream: Any) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None


def _console_handlers() -> list[tuple[logging.StreamHandler, int]]:
    """Logging handlers writing to this process's stdout or stderr, with that descriptor."""
    loggers = [logging.getLogger(), *(lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger))]
    found, seen = [], set()
    for lg in loggers:
        for handler in lg.handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler) \
                    and id(handler) not in seen and _fileno(handler.stream) in (1, 2):
                seen.add(id(handler))
                found.append((handler, _fileno(handler.stream)))
    return found


def _pump(read_fd: int, echo_fd: int, logger: logging.Logger, flow_run_id: str) -> None:
    """Copy each line from the pipe to ``echo_fd`` (the worker's console) and log it into the flow run."""
    with os.fdopen(read_fd, "rb") as pipe:
        for raw in pipe:
            with contextlib.suppress(OSError):
                os.write(echo_fd, raw)
            text = _ANSI.sub("", raw.decode("utf-8", errors="replace")).rstrip()
            text = text.rsplit("\r", 1)[-1].strip()  # a redrawn progress line: its last state
            if text:
                logger.info(text, extra={"flow_run_id": flow_run_id})


@contextlib.contextmanager
def output_to_run_logs(flow_run_id: str) -> Iterator[None]:
    """For the block: what this process and its children print (training progress, metrics, the
    promotion table) and ``samsar.*`` log records go to the flow run's logs as well as the console.

    stdout and stderr are replaced, at the descriptor level so that child processes (seed
    processes) are included, by pipes read by threads; Prefect's own console handlers are pointed
    at the real console meanwhile, so its lines are not logged twice.
    """
    from prefect.logging.handlers import APILogHandler

    samsar_logger, output_logger = logging.getLogger(SAMSAR_LOGGER), logging.getLogger(OUTPUT_LOGGER)
    api = APILogHandler()
    api.addFilter(_InFlowRun(flow_run_id))
    saved_levels = samsar_logger.level, output_logger.level, output_logger.propagate
    saved_streams = sys.stdout, sys.stderr
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    consoles = {fd: open(os.dup(saved[fd]), "w", buffering=1, encoding="utf-8", errors="replace") for fd in (1, 2)}
    swapped = []
    for handler, fd in _console_handlers():
        console = getattr(handler, "console", None)  # Prefect's rich console handler prints through it
        # rich's Console keeps None for "sys.stdout/stderr at print time": restore that, not today's stream.
        swapped.append((handler, handler.setStream(consoles[fd]), console, getattr(console, "_file", None)))
        if console is not None:
            console.file = consoles[fd]
    pumps = []
    try:
        for fd in (1, 2):
            read_fd, write_fd = os.pipe()
            os.dup2(write_fd, fd)
            os.close(write_fd)
            pump = threading.Thread(target=_pump, args=(read_fd, saved[fd], output_logger, flow_run_id),
                                    name=f"samsar-output-{fd}", daemon=True)
            pump.start()
            pumps.append(pump)
        # Python-level streams onto the descriptors too (they may have been replaced, e.g. by a test runner).
        sys.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
        sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
        samsar_logger.addHandler(api)
        output_logger.addHandler(api)
        output_logger.propagate = False  # the console has the raw line already
        if samsar_logger.getEffectiveLevel() > logging.INFO:
            samsar_logger.setLevel(logging.INFO)
        output_logger.setLevel(logging.INFO)
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        sys.stdout, sys.stderr = saved_streams
        for fd in (1, 2):
            os.dup2(saved[fd], fd)  # closes this process's write ends: the pumps reach EOF
        for pump in pumps:
            pump.join(_PUMP_JOIN_SECONDS)
        samsar_logger.removeHandler(api)
        output_logger.removeHandler(api)
        samsar_logger.setLevel(saved_levels[0])
        output_logger.setLevel(saved_levels[1])
        output_logger.propagate = saved_levels[2]
        for handler, stream, console, file in swapped:
            handler.setStream(stream)
            if console is not None:
                console._file = file
        for fd in (1, 2):
            os.close(saved[fd])
            with contextlib.suppress(OSError):
                consoles[fd].close()


@contextlib.contextmanager
def _forwarded_output() -> Iterator[None]:
    """:func:`output_to_run_logs` for a flow run a worker (or ``serve``) runs from a deployment; a
    local run (``samsar train``) keeps its terminal as it is."""
    ctx = FlowRunContext.get()
    flow_run = ctx.flow_run if ctx else None
    if flow_run is None or flow_run.deployment_id is None or os.environ.get("SAMSAR_OUTPUT_FORWARDED"):
        yield
        return
    os.environ["SAMSAR_OUTPUT_FORWARDED"] = "1"  # once per process (child processes inherit the pipe)
    try:
        with output_to_run_logs(str(flow_run.id)):
            yield
    finally:
        os.environ.pop("SAMSAR_OUTPUT_FORWARDED", None)


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


def configured(task_: Task, cfg: PipelineConfig, gpu: bool) -> Task:
    """The task with the retries of ``cfg`` (params ``pipeline``) and, for GPU work, its GPU tag."""
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
    metrics_file = params.metrics_path(variant)
    metrics = json.loads(metrics_file.read_text())
    get_run_logger().info("%s test metrics: %s", variant, ", ".join(
        f"{key} {_show(metrics.get(key))} ± {_show(metrics.get(key + '_std'))}" for key in ("mIoU", "mF1", "OA", "kappa")
        if key in metrics))
    return str(metrics_file)


def _show(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "n/a"


@task(name="card", cache_policy=NO_CACHE, retry_condition_fn=retry_if_transient)
def card_task(params_path: str, variant: str, metrics_path: str) -> str:
    """Render the model card from the metrics file; returns the card path."""
    from samsar.reporting.card import write_card

    if not Path(metrics_path).is_file():
        raise FileNotFoundError(f"{metrics_path}: no metrics; the evaluate task did not write them")
    return str(write_card(load_params(params_path), variant))


@task(name="register", cache_policy=NO_CACHE, retry_condition_fn=retry_if_transient)
def register_task(params_path: str, variants: list[str]) -> dict[str, Any] | None:
    """Register the evaluated variants (best new one per head -> challenger) and run each head's
    promotion gate; returns the first head's decision (classwise when listed)."""
    from samsar.tracking.registry import register_heads

    decisions = register_heads(load_params(params_path), variants=variants)
    logger = get_run_logger()
    if not decisions:
        logger.info("promotion decision: none (tracking is off)")
    for model, decision in decisions.items():
        if decision is None:
            logger.info("promotion decision for %s: none (nothing new to gate; see reports/registry.json)", model)
        else:
            logger.info("promotion decision: %s version %s %s; %s", decision.model, decision.version,
                        "PROMOTED to champion" if decision.promoted else "NOT promoted", "; ".join(decision.reasons))
    first = next(iter(decisions.values()), None)
    if first is None:
        return None
    return {"model": first.model, "version": first.version, "promoted": first.promoted, "reasons": first.reasons}


def ensure_gpu_limit(cfg: PipelineConfig) -> int:
    """The concurrency limit of ``cfg.gpu_tag`` (params ``pipeline``), created with ``gpu_slots`` if there is none."""
    with get_client(sync_client=True) as client:
        try:
            return client.read_concurrency_limit_by_tag(cfg.gpu_tag).concurrency_limit
        except ObjectNotFound:
            client.create_concurrency_limit(tag=cfg.gpu_tag, concurrency_limit=cfg.gpu_slots)
            return cfg.gpu_slots


@flow(name="samsar-train", flow_run_name="train-{variant}")
def train_flow(params_path: str, variant: str, resume: bool = False, force_resume: bool = False) -> str:
    """Train one variant over all its seeds in one flow run (what the DVC ``train`` stage runs through
    ``samsar train``); returns the adapter dir. SIGTERM or Ctrl+C reaches the caller as
    :class:`~samsar.errors.Interrupted` / KeyboardInterrupt (Prefect marks the runs Crashed)."""
    params = load_params(params_path)
    with _forwarded_output():
        return configured(train_task, params.pipeline, gpu=True)(params_path, variant, resume, force_resume)


@flow(name="samsar-variant", flow_run_name="variant-{variant}")
def variant_flow(params_path: str, variant: str) -> dict[str, Any] | None:
    """Train -> evaluate -> model card -> register/promote one variant; returns the promotion decision."""
    params = load_params(params_path)
    with _forwarded_output():
        adapter_dir = configured(train_task, params.pipeline, gpu=True)(params_path, variant)
        metrics_path = configured(evaluate_task, params.pipeline, gpu=True)(params_path, variant, adapter_dir)
        configured(card_task, params.pipeline, gpu=False)(params_path, variant, metrics_path)
        return configured(register_task, params.pipeline, gpu=False)(params_path, [variant])


@flow(name="samsar-all-variants")
def all_variants_flow(params_path: str, variants: list[str] | None = None) -> dict[str, Any] | None:
    """Every variant (default: params ``variants``) in parallel under the GPU limit, then one registration.

    Variants that fail do not stop the others; the evaluated ones are registered, then the flow
    fails naming the variants that did not finish.
    """
    with _forwarded_output():
        return _all_variants(params_path, variants)


def _all_variants(params_path: str, variants: list[str] | None) -> dict[str, Any] | None:
    from samsar.models.variants import VARIANTS

    params = load_params(params_path, known_variants=VARIANTS)
    variants = variants or params.variants
    logger = get_run_logger()
    logger.info("GPU tasks limited to %d at once (tag '%s')", ensure_gpu_limit(params.pipeline), params.pipeline.gpu_tag)
    train = configured(train_task, params.pipeline, gpu=True)
    evaluate = configured(evaluate_task, params.pipeline, gpu=True)
    card = configured(card_task, params.pipeline, gpu=False)
    cards = {}
    for variant in variants:
        adapter_dir = train.submit(params_path, variant)
        metrics_path = evaluate.submit(params_path, variant, adapter_dir)
        cards[variant] = card.submit(params_path, variant, metrics_path)
    wait(list(cards.values()))
    done = [v for v, future in cards.items() if future.state.is_completed()]
    failed = [v for v in variants if v not in done]
    decision = configured(register_task, params.pipeline, gpu=False)(params_path, done) if done else None
    if failed:
        raise RuntimeError(f"variants {failed} did not finish (see their task runs); registered: {done}")
    return decision

