"""Training of one variant: AdamW + warm-up/cosine, weighted CE + Dice, SAR-safe augmentation,
validation-mIoU model selection with early stopping, resumable checkpoints, DDP via ``torchrun``.

The budget is in optimizer steps (``train.epochs``, capped by ``train.max_steps``) and the
learning-rate schedule follows it, so the same params give the same weights however busy the
machine is. ``train.max_seconds`` is only a guard: when it fires the run is marked cut short.

Every variant trains once per seed of ``train.seeds`` within one ``samsar train`` command (Prefect
and interpreter start-up paid once; on a CPU the seeds run side by side in child processes). A seed
sets the head's initialisation, the epoch's sample order (a sampler seeded by ``(seed, epoch)``)
and each batch's augmentation (a generator seeded by ``(seed, epoch, batch, rank)``), so a run
resumed from a checkpoint replays exactly the batches an uninterrupted run would have seen.
A box_prompt variant (``<method>-box``) is prompted with boxes from each batch's labels after
augmentation, grown by ``variant_options.box_prompt.jitter`` px at most (a numpy generator seeded
the same way); validation uses exact boxes.

SIGTERM and Ctrl+C stop every seed (child processes included) at the next optimizer step or
epoch end, each with a checkpoint; ``--resume`` continues from them, after checking they were
made with the same training params and data (``--force-resume`` to continue anyway).
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import math
import os
import random
import shutil
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from rich.console import Console

from samsar.config import Params
from samsar.data.errors import DataError
from samsar.errors import Interrupted, TrainingError
from samsar.evaluation.metrics import format_metric, segmentation_metrics
from samsar.evaluation.tiles import autocast_for, dataset_confusion, tile_logits
from samsar.io import atomic_path, finite_or_none, write_json, write_text
from samsar.progress import Progress
from samsar.training.augment import augment_batch
from samsar.training.checkpoint import load_checkpoint, save_checkpoint, set_rng_state
from samsar.training.curves import write_curve
from samsar.training.distributed import DistContext, all_reduce_sum, broadcast_flag, distributed_context
from samsar.training.losses import SegmentationLoss, class_weights_from_counts
from samsar.training.schedules import WarmupCosine
from samsar.uncertainty import mean_and_std

log = logging.getLogger(__name__)

HISTORY_FIELDS = ("seed", "epoch", "step", "train_loss", "val_mIoU", "lr", "seconds")
CUT_SHORT = "max_seconds"  # the stop reason of the wall-time guard
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
DATA_HASH = "data_hash"  # key of the dataset's content hash in a checkpoint's record
CHECKPOINT_KEYS = ("state", "model", "best", "optimizer", "scheduler", "rng")  # what resuming reads
# Params a resumed run may change: guards and speed/memory settings that do not change what is
# learnt, the seed list (each checkpoint is of one seed) and the base checkpoint's path (its
# content is checked as the base id).
RESUMABLE_CHANGES = frozenset({"train.max_seconds", "train.checkpoint_every", "train.num_workers", "train.seeds",
                               "model.gradient_checkpointing", "model.checkpoint"})


def checkpoint_dir(params: Params, variant: str) -> Path:
    """Where the resumable checkpoints of ``variant`` live, one per seed (not a DVC output)."""
    return params.path(Path(".cache/checkpoints") / variant)


def checkpoint_path(params: Params, variant: str, seed: int) -> Path:
    """The resumable checkpoint of one seed of ``variant``."""
    return checkpoint_dir(params, variant) / f"seed{seed}" / "last.pt"


def train_variant(params: Params, variant: str, resume: bool = False, force_resume: bool = False) -> dict:
    """Train ``variant`` once per seed of ``train.seeds`` and write the variant's outputs.

    Per seed: ``models/<variant>/seeds/<seed>/{adapter/,history.csv,train_summary.json}`` and an
    MLflow run tagged with the seed, nested under one parent run of the variant. For the variant:
    ``models/<variant>/adapter`` (a copy of the seed with the best validation mIoU: validation
    selects, test never does), ``history.csv`` (all seeds) and ``train_summary.json`` (per-seed
    summaries, means). On a CPU the seeds train side by side, one process each (see
    :func:`seed_threads`); on CUDA and under ``torchrun`` one after the other, where every rank
    trains and rank 0 writes. Returns the variant summary.

    ``resume`` continues every seed from its checkpoint (seeds without one start over) once
    :func:`check_resumable` accepts them; ``force_resume`` (implies ``resume``) accepts checkpoints
    made with other training params or data. SIGTERM or Ctrl+C: every seed saves its checkpoint,
    the MLflow run ends KILLED and :class:`Interrupted` is raised.
    """
    resume = resume or force_resume
    if resume:
        check_resumable(params, variant, force_resume)
    with distributed_context() as ctx:
        tracked = ctx.is_main and params.tracking.enabled
        if tracked:
            from samsar.tracking.runs import variant_run

            parent = variant_run(params, variant)
        else:
            parent = contextlib.nullcontext(None)
        with parent as parent_handle:
            try:
                summaries = _train_seeds(params, variant, ctx, resume)
            except Interrupted as exc:
                exc.hint = f"resume with `samsar train --variant {variant} --resume` (each seed saved a checkpoint)"
                raise
            if not ctx.is_main:
                return summaries[0]
            if parent_handle is not None:
                from samsar.tracking.runs import log_seed_run

                for summary in summaries:
                    out = params.seed_dir(variant, summary["seed"])
                    summary["mlflow_run_id"] = log_seed_run(params, variant, summary, out, parent_handle.run_id)
                    write_json(out / "train_summary.json", finite_or_none(summary))
            summary = _write_variant_outputs(params, variant, summaries)
            if parent_handle is not None:
                parent_handle.set_tags({"selected_seed": summary["selected_seed"], "cut_short": summary["cut_short"]})
                parent_handle.log_metrics({"mean_best_val_mIoU": summary["best_val_mIoU"] or 0.0})
        return summary


def seed_threads(n_seeds: int) -> int:
    """Torch threads of each seed's process when seeds train side by side on a CPU.

    Small models parallelise poorly inside an operation; one seed per core keeps both cores busy
    (measured here: a tiny `cwsam` step takes 0.39 s on 2 threads, 0.56-0.62 s on 1 thread with a
    second seed beside it, so two seeds finish in about 0.6 of the time). The count depends only
    on the machine's cores and the number of seeds, so results do not depend on machine load.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // n_seeds)


class StopSignals:
    """SIGTERM and Ctrl+C (SIGINT) while seeds train: recorded in ``pending`` instead of raised, so
    the loop stops where its state is consistent (:meth:`Trainer._stop_if_signalled`), saves the
    checkpoint and raises :class:`Interrupted`. Installed only in the main thread; elsewhere the
    signals keep their handlers and ``pending`` stays None."""

    def __init__(self) -> None:
        self.pending: int | None = None
        self._previous: dict = {}

    def install(self) -> StopSignals:
        self._previous = _set_handlers({s: self._record for s in STOP_SIGNALS})
        return self

    def __enter__(self) -> StopSignals:
        return self.install()

    def __exit__(self, *exc_info) -> None:
        _set_handlers(self._previous)
        self._previous = {}

    def _record(self, signum: int, frame) -> None:
        if self.pending is None:
            self.pending = signum

    def raise_if_pending(self) -> None:
        if self.pending is not None:
            raise Interrupted(self.pending)


def _set_handlers(handlers: dict) -> dict:
    """Install signal handlers (in the main thread; elsewhere nothing); returns those they replace."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {s: signal.signal(s, signal.SIG_DFL if h is None else h) for s, h in handlers.items()}


def _train_seeds(params: Params, variant: str, ctx: DistContext, resume: bool) -> list[dict]:
    """Every seed's summary: side by side in child processes on a CPU, else one after the other.
    SIGTERM or Ctrl+C stops them all with a checkpoint each and raises :class:`Interrupted`."""
    seeds = params.train.seeds
    parallel = len(seeds) > 1 and not ctx.distributed and ctx.device.type == "cpu"
    if parallel:
        _warm_feature_cache(params, variant)  # interrupted at once if need be: nothing to save yet
    with StopSignals() as stop:
        if parallel:
            summaries = _train_seeds_in_processes(params, variant, resume, stop)
        else:
            summaries = [Trainer(params, variant, ctx, seed, stop).fit(resume) for seed in seeds]
    stop.raise_if_pending()  # a signal after the last step: the seeds are saved, the variant is not written
    return summaries


def _train_seeds_in_processes(params: Params, variant: str, resume: bool, stop: StopSignals) -> list[dict]:
    """Every seed in its own spawned process (all at once, :func:`seed_threads` threads each).

    A SIGTERM or SIGINT this process gets is forwarded to the seed processes until they have all
    stopped (a signal sent to the parent does not reach them). They start with both signals
    ignored, until :func:`_seed_process_init` records them, so none dies unsaved while starting
    (this process ignores them too for the milliseconds it takes to spawn them).
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, wait

    seeds = params.train.seeds
    threads = seed_threads(len(seeds))
    log.info("%s: seeds %s in %d processes, %d torch thread(s) each", variant, seeds, len(seeds), threads)
    with ProcessPoolExecutor(max_workers=len(seeds), mp_context=multiprocessing.get_context("spawn"),
                             initializer=_seed_process_init) as pool:
        ignored = _set_handlers({s: signal.SIG_IGN for s in STOP_SIGNALS})  # inherited; a Python handler is not
        try:
            futures = [pool.submit(_train_seed_process, params, variant, seed, resume, threads) for seed in seeds]
        finally:
            _set_handlers(ignored)
        while wait(futures, timeout=0.5).not_done:
            if stop.pending is not None:
                _signal_processes(pool, stop.pending)
        stop.raise_if_pending()
        return [future.result() for future in futures]


_SEED_PROCESS_STOP: StopSignals | None = None  # in a seed process: its SIGTERM/SIGINT record


def _seed_process_init() -> None:
    global _SEED_PROCESS_STOP
    _SEED_PROCESS_STOP = StopSignals().install()


def _train_seed_process(params: Params, variant: str, seed: int, resume: bool, threads: int) -> dict:
    torch.set_num_threads(threads)
    with distributed_context() as ctx:
        return Trainer(params, variant, ctx, seed, _SEED_PROCESS_STOP).fit(resume)


def _signal_processes(pool, signum: int) -> None:
    """Send ``signum`` to the worker processes of a ``ProcessPoolExecutor`` (there is no public API)."""
    for process in list((pool._processes or {}).values()):
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signum)


def resume_record(params: Params) -> dict[str, str]:
    """What a checkpoint records to be resumed safely: the params that shape training, as dotted
    keys (``train.lr``; not :data:`RESUMABLE_CHANGES`), and the processed data's content hash."""
    from samsar.tracking.provenance import dataset_hash, flatten_params

    flat = flatten_params(params, {"seed", "train", "model", "variant_options"})
    return {**{k: v for k, v in flat.items() if k not in RESUMABLE_CHANGES}, DATA_HASH: dataset_hash(params.processed_dir)}


def check_resumable(params: Params, variant: str, force: bool = False) -> None:
    """Before anything trains: some seed of ``variant`` has a checkpoint, and each one is readable,
    of this variant and seed, and made with the current training params and data (unless ``force``).
    Raises :class:`TrainingError` naming the checkpoint, what differs and the way out."""
    paths = {seed: checkpoint_path(params, variant, seed) for seed in params.train.seeds}
    found = {seed: path for seed, path in paths.items() if path.is_file()}
    if not found:
        raise TrainingError(f"{paths[params.train.seeds[0]]}: no checkpoint of any seed of '{variant}' to resume; "
                            f"train without --resume")
    now = resume_record(params)
    for seed, path in found.items():
        ckpt = load_checkpoint(path)
        _refuse_foreign(ckpt, path, variant, seed)
        made = ckpt.get("made_with")
        if made is None:
            problem = "it does not record the training params and data it was made with (an older samsar wrote it)"
        else:
            changes = _changes(made, now)
            if not changes:
                continue
            problem = "made with other training params or data: " + "; ".join(changes)
        if not force:
            raise TrainingError(f"{path}: {problem}; pass --force-resume to continue from it anyway, "
                                f"or train without --resume to start over")
        log.warning("%s: %s; resuming anyway (--force-resume)", path, problem)


def _changes(made: dict[str, str], now: dict[str, str]) -> list[str]:
    """``key old -> new`` for every recorded value that differs (the data hash last, shortened)."""
    def show(key: str, value: str | None) -> str:
        if value is None:
            return "unset"
        return value.removeprefix("sha256:")[:12] if key == DATA_HASH else value

    keys = sorted(made.keys() | now.keys(), key=lambda k: (k == DATA_HASH, k))
    return [f"{'data hash' if k == DATA_HASH else k} {show(k, made.get(k))} -> {show(k, now.get(k))}"
            for k in keys if made.get(k) != now.get(k)]


def _refuse_foreign(ckpt: dict, path: Path, variant: str, seed: int, base_id: str | None = None) -> None:
    """:class:`TrainingError` unless ``ckpt`` is a whole checkpoint of ``variant``, ``seed`` and
    (when given) ``base_id``; no flag overrides this."""
    made = (ckpt.get("variant"), ckpt.get("seed"), ckpt.get("base_id"))
    wanted = (variant, seed, made[2] if base_id is None else base_id)
    if made != wanted:
        raise TrainingError(
            f"{path}: checkpoint of variant '{made[0]}' seed {made[1]} on base {made[2]} cannot resume "
            f"'{variant}' seed {seed} on {wanted[2]}; delete it or train without --resume"
        )
    missing = [key for key in CHECKPOINT_KEYS if key not in ckpt]
    if missing:
        raise TrainingError(f"{path}: not a whole checkpoint (no {', '.join(missing)}); delete it or train without --resume")


def _warm_feature_cache(params: Params, variant: str) -> None:
    """Fill the trunk-feature cache before seeds train side by side: computed here in a fixed
    order, the cached values cannot depend on which process reached a tile first."""
    if not params.train.feature_cache:
        return
    with distributed_context() as ctx:
        trainer = Trainer(params, variant, ctx, params.train.seeds[0])
        if trainer.cached is not None:
            trainer.cached.warm(params.evaluate.batch_size)


def _write_variant_outputs(params: Params, variant: str, summaries: list[dict]) -> dict:
    """The variant-level adapter (best validation seed), merged history and summary; the git-tracked
    curve ``results/curves/<variant>.csv`` (DVC plots)."""
    out = params.variant_dir(variant)
    selected = max(summaries, key=lambda s: -math.inf if s["best_val_mIoU"] is None else s["best_val_mIoU"])
    with atomic_path(out / "adapter") as tmp:
        shutil.copytree(params.seed_dir(variant, selected["seed"]) / "adapter", tmp)
    rows = []
    for s in summaries:
        with (params.seed_dir(variant, s["seed"]) / "history.csv").open() as f:
            rows.extend(csv.DictReader(f))
    _write_history(out / "history.csv", rows)
    write_curve(params, variant, rows)
    val_mean, val_std = mean_and_std([s["best_val_mIoU"] for s in summaries])
    summary = {
        "variant": variant,
        "seeds": [s["seed"] for s in summaries],
        "selected_seed": selected["seed"],
        "selection": "best validation mIoU over seeds",
        "mlflow_run_id": selected["mlflow_run_id"],
        "base_id": selected["base_id"],
        "n_trainable_params": selected["n_trainable_params"],
        "n_total_params": selected["n_total_params"],
        "best_val_mIoU": val_mean,
        "best_val_mIoU_std": val_std,
        "steps": [s["steps"] for s in summaries],
        "train_seconds": round(sum(s["train_seconds"] for s in summaries), 3),
        "cut_short": any(s["cut_short"] for s in summaries),
        "runs": summaries,
    }
    write_json(out / "train_summary.json", finite_or_none(summary))
    Console(stderr=True).print(
        f"train {variant}: {len(summaries)} seeds, best val mIoU {format_metric(val_mean)} ± {format_metric(val_std)}, "
        f"steps {summary['steps']}; seed {selected['seed']} (best validation) -> {out / 'adapter'}"
        + (" [yellow]CUT SHORT by train.max_seconds[/]" if summary["cut_short"] else "")
    )
    return summary


class _TrainForward(nn.Module):
    """What DDP wraps: images -> logits, or cached trunk features -> logits (DDP hooks need
    every training forward to go through the wrapped module)."""

    def __init__(self, segmenter: nn.Module) -> None:
        super().__init__()
        self.segmenter = segmenter

    def forward(self, inputs: torch.Tensor, from_trunk: bool = False, boxes: list[torch.Tensor] | None = None) -> torch.Tensor:
        if from_trunk:
            return self.segmenter.forward_from_trunk(inputs, boxes)
        return tile_logits(self.segmenter, inputs, self.segmenter.spec.image_size, boxes)


@dataclass
class TrainState:
    """Counters and best-so-far; everything in it is a primitive or a tensor (checkpointable)."""

    epoch: int = 0  # current epoch (0-based)
    batches_done: int = 0  # micro-batches of the current epoch already consumed
    step: int = 0  # optimizer steps so far
    loss_sum: float = 0.0  # of the current epoch
    loss_count: int = 0
    elapsed: float = 0.0  # seconds trained before the current session
    best_miou: float = -1.0
    best_epoch: int = -1
    rounds_since_best: int = 0
    stop_reason: str = ""
    history: list[dict] = field(default_factory=list)


class Trainer:
    """Builds data, model and optimiser for one variant and runs the training loop."""

    def __init__(self, params: Params, variant: str, ctx: DistContext, seed: int, stop: StopSignals | None = None) -> None:
        from samsar.data.dataset import DatasetInfo, TileDataset
        from samsar.models.variants import build_segmenter
        from samsar.tracking.provenance import base_checkpoint_path

        self.params, self.variant, self.ctx, self.cfg, self.seed = params, variant, ctx, params.train, seed
        self.stop = stop or StopSignals()  # not installed: never pending
        _seed_everything(seed, self.cfg.deterministic)
        self.info = DatasetInfo.load(params.processed_dir)
        self.train_tiles = TileDataset(params.processed_dir, "train")
        self.val_tiles = TileDataset(params.processed_dir, "val")
        if len(self.train_tiles) == 0:
            raise DataError(f"{params.processed_dir}: the train split is empty; check preprocess.split")
        self.image_size = params.model.image_size
        self.base_checkpoint = base_checkpoint_path(params)
        self.segmenter = build_segmenter(
            variant,
            backbone=params.model.backbone,
            image_size=self.image_size,
            num_classes=self.info.num_classes,
            checkpoint=self.base_checkpoint,
            options=params.variant_options,
            seed=seed,
            gradient_checkpointing=params.model.gradient_checkpointing,
        ).to(ctx.device)
        weights = class_weights_from_counts(self.train_tiles.class_pixel_counts(), self.cfg.class_weights)
        self.loss_fn = SegmentationLoss(weights, self.info.ignore_index, self.cfg.dice_weight).to(ctx.device)
        self.optimizer = torch.optim.AdamW(self.segmenter.param_groups(self.cfg.lr), weight_decay=self.cfg.weight_decay)
        self.scheduler = WarmupCosine(self.optimizer, self.cfg.warmup_steps, self.cfg.min_lr)
        self.cached = self._feature_cache()
        self.model = _TrainForward(self.segmenter)
        if ctx.distributed:
            self.model = DistributedDataParallel(self.model, device_ids=[ctx.local_rank] if ctx.device.type == "cuda" else None)
        self.batches_per_epoch = math.ceil(math.ceil(len(self.train_tiles) / ctx.world_size) / self.cfg.batch_size)
        self.steps_per_epoch = math.ceil(self.batches_per_epoch / self.cfg.grad_accum)
        self.total_steps = self.steps_per_epoch * self.cfg.epochs
        if self.cfg.max_steps is not None:
            self.total_steps = min(self.total_steps, self.cfg.max_steps)
        self.ckpt_path = checkpoint_path(params, variant, seed)
        self.made_with = resume_record(params)
        self.out_dir = params.seed_dir(variant, seed)
        self.best: dict[str, torch.Tensor] | None = None  # trainable tensors of the best validation round

    # -- setup helpers -------------------------------------------------------------------------
    def _feature_cache(self):
        """Cached trunk features for frozen-trunk variants (exact with flips/rotations, not with crops)."""
        if not (self.cfg.feature_cache and self.segmenter.supports_feature_cache):
            return None
        if self.cfg.random_crop is not None or self.info.tile_size != self.image_size:
            log.info("feature cache off: random crops or resized tiles make trunk features vary")
            return None
        from samsar.training.feature_cache import CachedFeatureDataset, FeatureCache

        cache = FeatureCache.for_segmenter(self.params.path(".cache/features"), self.segmenter)
        return CachedFeatureDataset(self.train_tiles, self.segmenter, cache, augment=self.cfg.augment)

    # -- the loop ------------------------------------------------------------------------------
    def fit(self, resume: bool = False) -> dict:
        """Train until the step budget, early stopping or the ``train.max_seconds`` guard; return the summary."""
        state = self._restore() if resume and self.ckpt_path.is_file() else TrainState()
        # Trunk features are cached on first use rather than warmed up front: a short, time-capped
        # run draws only part of the 8 dihedral versions of each tile.
        session_start = time.perf_counter()

        def elapsed() -> float:
            return state.elapsed + time.perf_counter() - session_start

        bar = Progress(self.total_steps, f"{self.variant} seed {self.seed}", initial=state.step, enabled=self.ctx.is_main)
        self.segmenter.train()
        try:
            # batches_done: a checkpoint saved at the last step still has that epoch's validation to run
            while not state.stop_reason and (state.step < self.total_steps or state.batches_done):
                self._stop_if_signalled(state, elapsed)
                stopped_by_time = self._train_epoch(state, elapsed, bar)
                self._validate(state, elapsed)
                if stopped_by_time:
                    state.stop_reason = CUT_SHORT
                elif state.step >= self.total_steps:
                    state.stop_reason = "max_steps" if state.epoch + 1 < self.cfg.epochs else "epochs"
                elif state.rounds_since_best >= self.cfg.early_stopping_patience:
                    state.stop_reason = "early_stopping"
                state.epoch += 1
                state.batches_done, state.loss_sum, state.loss_count = 0, 0.0, 0
        finally:
            bar.close()
        state.stop_reason = state.stop_reason or "epochs"
        state.elapsed = elapsed()
        if self.best is not None:
            self.segmenter.load_state_dict(self.best, strict=False)
        self._save_checkpoint(state)
        summary = self._summary(state)
        if self.ctx.is_main:
            self._write_outputs(state, summary)
        return summary

    def _train_epoch(self, state: TrainState, elapsed, bar) -> bool:
        """Run the rest of the current epoch (or up to the step budget); True when the time guard fired."""
        if state.step >= self.total_steps:
            return False
        batches = self._epoch_batches(state.epoch)
        dataset = self.cached if self.cached is not None else self.train_tiles
        loader = DataLoader(dataset, batch_sampler=batches[state.batches_done :], num_workers=self.cfg.num_workers)
        accum = self.cfg.grad_accum
        for batch in loader:
            i = state.batches_done
            last_of_step = (i + 1) % accum == 0 or i + 1 == len(batches)
            sync = self.model.no_sync() if self.ctx.distributed and not last_of_step else contextlib.nullcontext()
            with sync:
                loss = self._micro_step(batch, state.epoch, i)
                (loss / accum).backward()
            state.batches_done += 1
            state.loss_sum += float(loss.detach())
            state.loss_count += 1
            if not last_of_step:
                continue
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            state.step += 1
            self.scheduler.step(state.step / self.total_steps)
            bar.set_postfix(loss=f"{state.loss_sum / state.loss_count:.3f}", lr=f"{self.scheduler.last_lr():.2e}")
            bar.update(1)
            self._stop_if_signalled(state, elapsed)
            if self.cfg.checkpoint_every and state.step % self.cfg.checkpoint_every == 0:
                self._save_checkpoint(state, elapsed())
            out_of_time = self.cfg.max_seconds is not None and elapsed() >= self.cfg.max_seconds
            if broadcast_flag(out_of_time, self.ctx):
                return True
            if state.step >= self.total_steps:
                break
        return False

    def _micro_step(self, batch: dict, epoch: int, index: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(_batch_seed(self.seed, epoch, index, self.ctx.rank))
        device = self.ctx.device
        if self.cached is not None:
            features, labels = self.cached.batch_features(batch, generator if self.cfg.augment else None)
            inputs, from_trunk = features.to(device), True  # forward_from_trunk casts the fp16 cache
        else:
            images, labels = batch["image"], batch["label"]
            if self.cfg.augment:
                images, labels = augment_batch(images, labels, generator, self.cfg.random_crop)
            inputs, from_trunk = images.to(device), False
        # Box prompts from the labels as augmented and cropped, jittered reproducibly per micro-batch.
        boxes = self.segmenter.truth_boxes(labels, np.random.default_rng([self.seed, epoch, index, self.ctx.rank]))
        with autocast_for(device, self.cfg.precision):
            logits = self.model(inputs, from_trunk=from_trunk, boxes=boxes)
        return self.loss_fn(logits.float(), labels.to(device))

    def _epoch_batches(self, epoch: int) -> list[list[int]]:
        """This rank's micro-batches of ``epoch``: a permutation seeded by ``(seed, epoch)``."""
        sampler = DistributedSampler(
            self.train_tiles, num_replicas=self.ctx.world_size, rank=self.ctx.rank, shuffle=True, seed=self.seed
        )
        sampler.set_epoch(epoch)
        order = list(sampler)
        size = self.cfg.batch_size
        return [order[i : i + size] for i in range(0, len(order), size)]

    def _validate(self, state: TrainState, elapsed) -> None:
        """One validation round: history row, best-state bookkeeping."""
        miou = self._val_miou()
        train_loss = state.loss_sum / state.loss_count if state.loss_count else float("nan")
        row = {
            "seed": self.seed,
            "epoch": state.epoch,
            "step": state.step,
            "train_loss": train_loss,
            "val_mIoU": miou,
            "lr": self.scheduler.last_lr(),
            "seconds": round(elapsed(), 3),
        }
        state.history.append(row)
        # Without a validation split (NaN) the latest weights are kept.
        if math.isnan(miou) or self.best is None or miou > state.best_miou:
            state.best_miou, state.best_epoch, state.rounds_since_best = miou, state.epoch, 0
            self.best = {n: t.detach().clone() for n, t in self.segmenter.trainable_state_dict().items()}
        else:
            state.rounds_since_best += 1
        if self.ctx.is_main:
            log.info("%s seed %d epoch %d: loss %.4f, val mIoU %.4f", self.variant, self.seed, state.epoch, train_loss, miou)
            _write_history(self.out_dir / "history.csv", state.history)

    def _val_miou(self) -> float:
        """Validation mIoU (all classes) from one confusion matrix summed over ranks."""
        if len(self.val_tiles) == 0:
            return float("nan")
        indices = range(self.ctx.rank, len(self.val_tiles), self.ctx.world_size)
        cm = dataset_confusion(
            self.segmenter, self.val_tiles, self.info.num_classes, self.info.ignore_index, self.image_size,
            self.ctx.device, self.params.evaluate.batch_size, self.cfg.precision, indices,
        )
        cm = all_reduce_sum(torch.from_numpy(cm), self.ctx).numpy()
        return segmentation_metrics(cm, self.info.class_names)["mIoU"]

    # -- checkpoints ---------------------------------------------------------------------------
    def _stop_if_signalled(self, state: TrainState, elapsed) -> None:
        """Called where the state is consistent (after an optimizer step, between epochs): after
        SIGTERM or Ctrl+C, save the checkpoint and raise :class:`Interrupted` (all ranks together)."""
        if not broadcast_flag(self.stop.pending is not None, self.ctx):
            return
        self._save_checkpoint(state, elapsed())
        log.info("%s seed %d: stopped at epoch %d, step %d; checkpoint %s", self.variant, self.seed, state.epoch,
                 state.step, self.ckpt_path)
        raise Interrupted(self.stop.pending or signal.SIGTERM)

    def _save_checkpoint(self, state: TrainState, elapsed: float | None = None) -> None:
        if not self.ctx.is_main:
            return
        snapshot = asdict(state)
        if elapsed is not None:
            snapshot["elapsed"] = elapsed
        save_checkpoint(self.ckpt_path, {
            "variant": self.variant,
            "seed": self.seed,
            "base_id": self.segmenter.base_id,
            "made_with": self.made_with,
            "state": snapshot,
            "model": {n: t.detach().cpu() for n, t in self.segmenter.trainable_state_dict().items()},
            "best": None if self.best is None else {n: t.cpu() for n, t in self.best.items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
        })

    def _restore(self) -> TrainState:
        ckpt = load_checkpoint(self.ckpt_path)
        _refuse_foreign(ckpt, self.ckpt_path, self.variant, self.seed, self.segmenter.base_id)
        self.segmenter.load_state_dict(ckpt["model"], strict=False)
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        set_rng_state(ckpt["rng"])
        device = self.ctx.device
        self.best = None if ckpt["best"] is None else {n: t.to(device) for n, t in ckpt["best"].items()}
        state = TrainState(**ckpt["state"])
        log.info("%s seed %d: resumed at epoch %d, step %d", self.variant, self.seed, state.epoch, state.step)
        return state

    # -- outputs -------------------------------------------------------------------------------
    def _summary(self, state: TrainState) -> dict:
        n_trainable = sum(p.numel() for p in self.segmenter.parameters() if p.requires_grad)
        return {
            "variant": self.variant,
            "seed": self.seed,
            "base_id": self.segmenter.base_id,
            "train_seconds": round(state.elapsed, 3),
            "n_trainable_params": n_trainable,
            "n_total_params": sum(p.numel() for p in self.segmenter.parameters()),
            "best_val_mIoU": state.best_miou if state.best_epoch >= 0 and not math.isnan(state.best_miou) else None,
            "best_epoch": state.best_epoch,
            "epochs_run": len(state.history),
            "steps": state.step,
            "step_budget": self.total_steps,
            "stop_reason": state.stop_reason,
            "cut_short": state.stop_reason == CUT_SHORT,
            "mlflow_run_id": None,  # set once the seed's run is logged
            "world_size": self.ctx.world_size,
            "device": str(self.ctx.device),
            "feature_cache": self.cached is not None,
        }

    def _adapter_meta(self) -> dict:
        info = self.info
        return {
            "variant": self.variant,
            "class_names": info.class_names,
            "class_colors": [list(c) for c in info.colors],
            "ignore_index": info.ignore_index,
            "background": info.background,
            "tile_size": info.tile_size,
            "scaling": info.scaler.to_dict(),
            "dataset": self.params.data.name,
            "data_source": info.source,
            "seed": self.seed,
            "train": self.cfg.model_dump(mode="json"),
        }

    def _write_outputs(self, state: TrainState, summary: dict) -> None:
        from samsar.models.artifacts import save_adapter

        if state.step == 0:  # never replace an adapter with an untrained one
            raise TrainingError(f"{self.out_dir / 'adapter'}: {self.variant} seed {self.seed} trained 0 steps, so nothing "
                                f"was written; check train.epochs and train.max_steps")
        save_adapter(self.segmenter, self.out_dir / "adapter", self._adapter_meta())
        _write_history(self.out_dir / "history.csv", state.history)
        write_json(self.out_dir / "train_summary.json", finite_or_none(summary))
        Console(stderr=True).print(
            f"train {self.variant} seed {self.seed}: best val mIoU {format_metric(summary['best_val_mIoU'])} at epoch "
            f"{summary['best_epoch']}, {summary['steps']}/{self.total_steps} steps in {summary['train_seconds']:.0f} s "
            f"(stopped by {state.stop_reason})" + (" [yellow]CUT SHORT by train.max_seconds[/]" if summary["cut_short"] else "")
        )


def _write_history(path: Path, rows: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HISTORY_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


def _batch_seed(seed: int, epoch: int, index: int, rank: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, index, rank]).generate_state(1)[0])


def _seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
