"""Training of one variant: AdamW + warm-up/cosine, weighted CE + Dice, SAR-safe augmentation,
validation-mIoU model selection with early stopping, resumable checkpoints, DDP via ``torchrun``.

Reproducibility: the epoch's sample order comes from a sampler seeded by ``(train.seed, epoch)``
and each batch's augmentation from a generator seeded by ``(train.seed, epoch, batch, rank)``, so a
run resumed from a checkpoint replays exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from rich.console import Console
from tqdm import tqdm

from samsar.config import Params
from samsar.evaluation.metrics import format_metric, segmentation_metrics
from samsar.evaluation.tiles import autocast_for, dataset_confusion, tile_logits
from samsar.io import write_json, write_text
from samsar.training.augment import augment_batch
from samsar.training.checkpoint import load_checkpoint, save_checkpoint, set_rng_state
from samsar.training.distributed import DistContext, all_reduce_sum, broadcast_flag, distributed_context
from samsar.training.losses import SegmentationLoss, class_weights_from_counts
from samsar.training.schedules import WarmupCosine

log = logging.getLogger(__name__)

HISTORY_FIELDS = ("epoch", "step", "train_loss", "val_mIoU", "lr", "seconds")


def checkpoint_path(params: Params, variant: str) -> Path:
    """Where the resumable checkpoint of ``variant`` lives (not a DVC output)."""
    return params.path(Path(".cache/checkpoints") / variant / "last.pt")


def train_variant(params: Params, variant: str, resume: bool = False) -> dict:
    """Train ``variant`` on the processed dataset; write the adapter, history.csv and train_summary.json.

    Under ``torchrun`` every rank trains (gradients averaged by DDP) and rank 0 writes the files.
    Returns the training summary.
    """
    with distributed_context() as ctx:
        trainer = Trainer(params, variant, ctx)
        if not (ctx.is_main and params.tracking.enabled):
            return trainer.fit(resume)
        from samsar.tracking.runs import resume_run, training_run

        previous_run = trainer.checkpointed_run_id() if resume else None
        run = resume_run(params, previous_run) if previous_run else training_run(params, variant)
        with run as handle:
            return trainer.fit(resume, tracker=handle)


class _TrainForward(nn.Module):
    """What DDP wraps: images -> logits, or cached trunk features -> logits (DDP hooks need
    every training forward to go through the wrapped module)."""

    def __init__(self, segmenter: nn.Module) -> None:
        super().__init__()
        self.segmenter = segmenter

    def forward(self, inputs: torch.Tensor, from_trunk: bool = False) -> torch.Tensor:
        if from_trunk:
            return self.segmenter.forward_from_trunk(inputs)
        return tile_logits(self.segmenter, inputs, self.segmenter.spec.image_size)


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
    mlflow_run_id: str = ""


class Trainer:
    """Builds data, model and optimiser for one variant and runs the training loop."""

    def __init__(self, params: Params, variant: str, ctx: DistContext) -> None:
        from samsar.data.dataset import DatasetInfo, TileDataset
        from samsar.models.variants import build_segmenter
        from samsar.tracking.provenance import base_checkpoint_path

        self.params, self.variant, self.ctx, self.cfg = params, variant, ctx, params.train
        _seed_everything(self.cfg.seed, self.cfg.deterministic)
        self.info = DatasetInfo.load(params.processed_dir)
        self.train_tiles = TileDataset(params.processed_dir, "train")
        self.val_tiles = TileDataset(params.processed_dir, "val")
        if len(self.train_tiles) == 0:
            raise ValueError(f"{params.processed_dir}: the train split is empty; check preprocess.split")
        self.image_size = params.model.image_size
        self.base_checkpoint = base_checkpoint_path(params)
        self.segmenter = build_segmenter(
            variant,
            backbone=params.model.backbone,
            image_size=self.image_size,
            num_classes=self.info.num_classes,
            checkpoint=self.base_checkpoint,
            options=params.variant_options,
            seed=params.seed,
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
        self.total_steps = max(1, self.steps_per_epoch * self.cfg.epochs)
        self.ckpt_path = checkpoint_path(params, variant)
        self.out_dir = params.variant_dir(variant)
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

    def checkpointed_run_id(self) -> str | None:
        """MLflow run of the interrupted training, to continue logging into it on resume."""
        if not self.ckpt_path.is_file():
            return None
        return load_checkpoint(self.ckpt_path)["state"].get("mlflow_run_id") or None

    # -- the loop ------------------------------------------------------------------------------
    def fit(self, resume: bool = False, tracker: Any = None) -> dict:
        """Train until the epoch budget, ``train.max_seconds`` or early stopping; return the summary."""
        state = self._restore() if resume else TrainState()
        if tracker is not None:
            state.mlflow_run_id = tracker.run_id or ""
        # Trunk features are cached on first use rather than warmed up front: a short, time-capped
        # run draws only part of the 8 dihedral versions of each tile.
        session_start = time.perf_counter()

        def elapsed() -> float:
            return state.elapsed + time.perf_counter() - session_start

        bar = tqdm(total=self.total_steps, initial=state.step, desc=self.variant, unit="step",
                   disable=None if self.ctx.is_main else True, dynamic_ncols=True)
        self.segmenter.train()
        while not state.stop_reason and state.epoch < self.cfg.epochs:
            stopped_by_time = self._train_epoch(state, elapsed, bar)
            self._validate(state, elapsed, tracker)
            if stopped_by_time:
                state.stop_reason = "max_seconds"
            elif state.rounds_since_best >= self.cfg.early_stopping_patience:
                state.stop_reason = "early_stopping"
            state.epoch += 1
            state.batches_done, state.loss_sum, state.loss_count = 0, 0.0, 0
        bar.close()
        state.stop_reason = state.stop_reason or "epochs"
        state.elapsed = elapsed()
        if self.best is not None:
            self.segmenter.load_state_dict(self.best, strict=False)
        self._save_checkpoint(state)
        summary = self._summary(state)
        if self.ctx.is_main:
            self._write_outputs(state, summary, tracker)
        return summary

    def _train_epoch(self, state: TrainState, elapsed, bar) -> bool:
        """Run the rest of the current epoch; True when the time budget ran out."""
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
            self.scheduler.step(self._progress(state.step, elapsed()))
            bar.update(1)
            bar.set_postfix(loss=f"{state.loss_sum / state.loss_count:.3f}", lr=f"{self.scheduler.last_lr():.2e}")
            if self.cfg.checkpoint_every and state.step % self.cfg.checkpoint_every == 0:
                self._save_checkpoint(state, elapsed())
            out_of_time = self.cfg.max_seconds is not None and elapsed() >= self.cfg.max_seconds
            if broadcast_flag(out_of_time, self.ctx):
                return True
        return False

    def _micro_step(self, batch: dict, epoch: int, index: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(_batch_seed(self.cfg.seed, epoch, index, self.ctx.rank))
        device = self.ctx.device
        if self.cached is not None:
            features, labels = self.cached.batch_features(batch, generator if self.cfg.augment else None)
            inputs, from_trunk = features.to(device), True  # forward_from_trunk casts the fp16 cache
        else:
            images, labels = batch["image"], batch["label"]
            if self.cfg.augment:
                images, labels = augment_batch(images, labels, generator, self.cfg.random_crop)
            inputs, from_trunk = images.to(device), False
        with autocast_for(device, self.cfg.precision):
            logits = self.model(inputs, from_trunk=from_trunk)
        return self.loss_fn(logits.float(), labels.to(device))

    def _epoch_batches(self, epoch: int) -> list[list[int]]:
        """This rank's micro-batches of ``epoch``: a permutation seeded by ``(seed, epoch)``."""
        sampler = DistributedSampler(
            self.train_tiles, num_replicas=self.ctx.world_size, rank=self.ctx.rank, shuffle=True, seed=self.cfg.seed
        )
        sampler.set_epoch(epoch)
        order = list(sampler)
        size = self.cfg.batch_size
        return [order[i : i + size] for i in range(0, len(order), size)]

    def _progress(self, step: int, seconds: float) -> float:
        progress = step / self.total_steps
        if self.cfg.max_seconds:
            progress = max(progress, seconds / self.cfg.max_seconds)
        return progress

    def _validate(self, state: TrainState, elapsed, tracker) -> None:
        """One validation round: history row, best-state bookkeeping, metrics to MLflow."""
        miou = self._val_miou()
        train_loss = state.loss_sum / state.loss_count if state.loss_count else float("nan")
        row = {
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
            log.info("%s epoch %d: loss %.4f, val mIoU %.4f", self.variant, state.epoch, train_loss, miou)
            self._write_history(state.history)
            if tracker is not None:
                tracker.log_metrics({k: row[k] for k in ("train_loss", "val_mIoU", "lr")}, step=state.epoch)

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
    def _save_checkpoint(self, state: TrainState, elapsed: float | None = None) -> None:
        if not self.ctx.is_main:
            return
        snapshot = asdict(state)
        if elapsed is not None:
            snapshot["elapsed"] = elapsed
        save_checkpoint(self.ckpt_path, {
            "variant": self.variant,
            "base_id": self.segmenter.base_id,
            "state": snapshot,
            "model": {n: t.detach().cpu() for n, t in self.segmenter.trainable_state_dict().items()},
            "best": None if self.best is None else {n: t.cpu() for n, t in self.best.items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
        })

    def _restore(self) -> TrainState:
        ckpt = load_checkpoint(self.ckpt_path)
        if ckpt["variant"] != self.variant or ckpt["base_id"] != self.segmenter.base_id:
            raise ValueError(
                f"{self.ckpt_path}: checkpoint of variant '{ckpt['variant']}' on base {ckpt['base_id']} cannot resume "
                f"'{self.variant}' on {self.segmenter.base_id}; train without --resume"
            )
        self.segmenter.load_state_dict(ckpt["model"], strict=False)
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        set_rng_state(ckpt["rng"])
        device = self.ctx.device
        self.best = None if ckpt["best"] is None else {n: t.to(device) for n, t in ckpt["best"].items()}
        state = TrainState(**ckpt["state"])
        log.info("%s: resumed at epoch %d, step %d", self.variant, state.epoch, state.step)
        return state

    # -- outputs -------------------------------------------------------------------------------
    def _summary(self, state: TrainState) -> dict:
        n_trainable = sum(p.numel() for p in self.segmenter.parameters() if p.requires_grad)
        return {
            "variant": self.variant,
            "base_id": self.segmenter.base_id,
            "train_seconds": round(state.elapsed, 3),
            "n_trainable_params": n_trainable,
            "n_total_params": sum(p.numel() for p in self.segmenter.parameters()),
            "best_val_mIoU": state.best_miou if state.best_epoch >= 0 and not math.isnan(state.best_miou) else None,
            "best_epoch": state.best_epoch,
            "epochs_run": len(state.history),
            "steps": state.step,
            "stop_reason": state.stop_reason,
            "mlflow_run_id": state.mlflow_run_id or None,
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
            "train": self.cfg.model_dump(mode="json"),
        }

    def _write_history(self, history: list[dict]) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=HISTORY_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(history)
        write_text(self.out_dir / "history.csv", buffer.getvalue())

    def _write_outputs(self, state: TrainState, summary: dict, tracker: Any) -> None:
        from samsar.models.artifacts import save_adapter

        save_adapter(self.segmenter, self.out_dir / "adapter", self._adapter_meta())
        self._write_history(state.history)
        write_json(self.out_dir / "train_summary.json", summary)
        Console(stderr=True).print(
            f"train {self.variant}: best val mIoU {format_metric(summary['best_val_mIoU'])} at epoch {summary['best_epoch']}, "
            f"{summary['steps']} steps in {summary['train_seconds']:.0f} s (stopped by {state.stop_reason}) "
            f"-> {self.out_dir / 'adapter'}"
        )
        if tracker is not None:
            tracker.log_metrics({"best_val_mIoU": summary["best_val_mIoU"] or 0.0, "train_seconds": summary["train_seconds"],
                                 "n_trainable_params": summary["n_trainable_params"]})
            tracker.log_artifacts(self.out_dir / "history.csv")
            tracker.log_artifacts(self.out_dir / "train_summary.json")


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
