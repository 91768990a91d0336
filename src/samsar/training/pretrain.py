"""The stand-in foundation model: the tiny SAM fully trained on a synthetic *source* domain.

Real SAM weights cannot be downloaded here, and comparing fine-tuning methods on a randomly
initialised encoder measures nothing. So the whole tiny SAM (with a classwise head over
:data:`samsar.data.synthetic.SOURCE_CLASSES`, by default its cheap ``light`` form) is trained on
source-domain scenes generated on the fly — other land types, backscatter statistics and more
looks than the target data — and its SAM state dict is saved in the official key format that
``build_sam(checkpoint=...)`` loads; the class head is not kept.
"""

from __future__ import annotations

import multiprocessing
import time
from collections import deque
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from samsar.config import Params
from samsar.data.scaling import SarScaler
from samsar.data.synthetic import SOURCE_CLASSES, generate_scene
from samsar.evaluation.metrics import confusion_matrix, segmentation_metrics
from samsar.evaluation.tiles import autocast_for, fixed_threads
from samsar.io import atomic_path, finite_or_none, write_json
from samsar.progress import Progress
from samsar.training.augment import augment_batch, random_crop_pair
from samsar.training.losses import SegmentationLoss, class_weights_from_counts
from samsar.training.schedules import WarmupCosine

SAM_PREFIXES = ("image_encoder.", "prompt_encoder.", "mask_decoder.")
IGNORE_INDEX = 255
HOLDOUT_SCENES = 2  # source scenes kept aside to report how well the base fits its own domain


def summary_path(output: Path) -> Path:
    """The JSON written beside the base checkpoint (steps, time, source-domain mIoU)."""
    return output.with_suffix(".json")


BASE_RECORD = "base_record.json"


def base_record_path(params: Params) -> Path:
    """The JSON naming the base the variants start from, written by every ``samsar pretrain`` (also
    when it trains nothing), so the stage's DVC output (the folder of ``pretrain.output``) always exists."""
    return params.path(params.pretrain.output).parent / BASE_RECORD


def write_base_record(params: Params, kind: str, note: str) -> Path:
    """Record the base: ``random-init``, ``checkpoint`` (``model.checkpoint``) or ``pretrained`` (the stand-in)."""
    from samsar.tracking.provenance import base_checkpoint_id, base_checkpoint_path

    checkpoint = base_checkpoint_path(params)
    record = base_record_path(params)
    write_json(record, {
        "base": kind,
        "checkpoint": str(checkpoint.relative_to(params.root) if checkpoint.is_relative_to(params.root) else checkpoint)
        if checkpoint else None,
        "base_id": base_checkpoint_id(params),  # sha256 of the checkpoint, or "random-init"
        "backbone": params.model.backbone,
        "note": note,
    })
    return record


PREFETCH_SCENES = 4  # scenes generated ahead, in a helper process, while the model trains


class SourceScenes:
    """A rotating pool of source-domain scenes, scaled to ``[0, 1]`` like the target tiles.

    With an ``executor``, the scenes that :meth:`refresh` brings in are generated ahead in it, in
    index order; a scene depends only on its index, so the result does not depend on timing.
    """

    def __init__(self, params: Params, executor: Executor | None = None) -> None:
        self.cfg = params.pretrain.synthetic
        self.size = params.model.image_size
        if self.cfg.scene_size < self.size:
            raise ValueError(f"pretrain.synthetic.scene_size {self.cfg.scene_size} is smaller than model.image_size {self.size}")
        pool = [generate_scene(self.cfg, i, SOURCE_CLASSES) for i in range(self.cfg.n_scenes)]
        self.scaler = SarScaler(
            input_kind="intensity", to_db=True, percentiles=tuple(params.preprocess.clip_percentiles)
        ).fit(intensity for intensity, _ in pool)
        self.pool = [self._tensors(*scene) for scene in pool]
        self.counts = np.bincount(np.concatenate([lab.ravel() for _, lab in pool]), minlength=len(SOURCE_CLASSES))
        self.next_index = self.cfg.n_scenes + HOLDOUT_SCENES  # indices n..n+1 are the holdout
        self.executor = executor
        self.pending: deque[Future] = deque()

    def _tensors(self, intensity: np.ndarray, label: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(self.scaler.transform(intensity)), torch.from_numpy(label.astype(np.int64))

    def holdout(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Scenes never trained on."""
        return [self._tensors(*generate_scene(self.cfg, self.cfg.n_scenes + i, SOURCE_CLASSES)) for i in range(HOLDOUT_SCENES)]

    def refresh(self, step: int) -> None:
        """Replace one pool scene by a newly generated one (round robin)."""
        if self.executor is None:
            scene = generate_scene(self.cfg, self.next_index, SOURCE_CLASSES)
            self.next_index += 1
        else:
            while len(self.pending) < PREFETCH_SCENES:
                self.pending.append(self.executor.submit(generate_scene, self.cfg, self.next_index, SOURCE_CLASSES))
                self.next_index += 1
            scene = self.pending.popleft().result()
        self.pool[step % len(self.pool)] = self._tensors(*scene)

    def batch(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Random ``image_size`` crops of random pool scenes, randomly flipped / rotated."""
        picks = torch.randint(0, len(self.pool), (batch_size,), generator=generator).tolist()
        crops = [random_crop_pair(*self.pool[i], self.size, generator) for i in picks]
        images, labels = torch.stack([c[0] for c in crops]), torch.stack([c[1] for c in crops])
        return augment_batch(images, labels, generator)


def pretrain(params: Params) -> Path | None:
    """Train the stand-in base and write its SAM state dict atomically to ``pretrain.output``.

    A no-op returning the checkpoint path when ``model.checkpoint`` names a real SAM checkpoint;
    returns None when ``pretrain.enabled`` is false (variants then start from a random init).
    """
    console = Console(stderr=True)
    if params.model.checkpoint is not None:
        note = f"pretrain skipped: model.checkpoint is set ({params.model.checkpoint}); variants adapt that base"
        console.print(f"{note} (recorded in {write_base_record(params, 'checkpoint', note)})")
        return params.path(params.model.checkpoint)
    if not params.pretrain.enabled:
        note = "pretrain skipped: pretrain.enabled is false; variants start from a random encoder"
        console.print(f"{note} (recorded in {write_base_record(params, 'random-init', note)})")
        return None
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu":
        with fixed_threads(1), ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
            return _pretrain(params, device, SourceScenes(params, pool), console)
    return _pretrain(params, device, SourceScenes(params), console)


def _pretrain(params: Params, device: torch.device, scenes: SourceScenes, console: Console) -> Path:
    """On a CPU: one torch thread, so the base is bitwise the same on an idle or a busy machine
    (with two threads, an idle and a loaded run here gave different bases: source holdout mIoU
    0.717 vs 0.713); the second core generates the coming scenes meanwhile."""
    from samsar.models.classwise_decoder import ClasswiseMaskDecoder
    from samsar.models.variants import build_segmenter

    cfg, train_cfg = params.pretrain, params.train
    torch.manual_seed(params.seed)
    generator = torch.Generator().manual_seed(params.seed)
    segmenter = build_segmenter(
        "full", backbone=params.model.backbone, image_size=params.model.image_size,
        num_classes=len(SOURCE_CLASSES), seed=params.seed,
        gradient_checkpointing=params.model.gradient_checkpointing,
    )
    if cfg.head == "light":
        segmenter.head = ClasswiseMaskDecoder(
            len(SOURCE_CLASSES), segmenter.sam.prompt_encoder.no_mask_embed.weight, light=True
        )
    segmenter.to(device)
    weights = class_weights_from_counts(scenes.counts, "inverse_sqrt")
    loss_fn = SegmentationLoss(weights, IGNORE_INDEX, train_cfg.dice_weight).to(device)
    optimizer = torch.optim.AdamW(segmenter.param_groups(cfg.lr), weight_decay=train_cfg.weight_decay)
    scheduler = WarmupCosine(optimizer, train_cfg.warmup_steps, train_cfg.min_lr)

    start = time.perf_counter()
    losses: list[float] = []
    bar = Progress(cfg.max_steps, "pretrain")
    segmenter.train()
    step = 0
    cut_short = False
    while step < cfg.max_steps:
        if cfg.max_seconds is not None and time.perf_counter() - start >= cfg.max_seconds:
            cut_short = True
            break
        images, labels = scenes.batch(cfg.batch_size, generator)
        with autocast_for(device, train_cfg.precision):
            logits = segmenter(images.to(device))
        loss = loss_fn(logits.float(), labels.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        scheduler.step(step / cfg.max_steps)
        scenes.refresh(step)
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", lr=f"{scheduler.last_lr():.2e}")
        bar.update(1)
    bar.close()
    seconds = time.perf_counter() - start

    output = params.path(cfg.output)
    state = {k: v.detach().cpu() for k, v in segmenter.sam.state_dict().items() if k.startswith(SAM_PREFIXES)}
    with atomic_path(output) as tmp:
        torch.save(state, tmp)
    holdout = _holdout_miou(segmenter, scenes, device, train_cfg.precision)
    write_json(summary_path(output), finite_or_none({  # a diverged loss is written as null
        "steps": step,
        "max_steps": cfg.max_steps,
        "cut_short": cut_short,
        "seconds": round(seconds, 2),
        "final_loss": float(np.mean(losses[-20:])) if losses else None,
        "source_holdout_mIoU": holdout,
        "source_classes": list(SOURCE_CLASSES),
        "synthetic": cfg.synthetic.model_dump(mode="json"),
        "head": cfg.head,
        "backbone": params.model.backbone,
        "image_size": params.model.image_size,
    }))
    write_base_record(params, "pretrained", f"the stand-in base trained by samsar pretrain ({step}/{cfg.max_steps} steps)")
    console.print(f"pretrain: {step}/{cfg.max_steps} steps in {seconds:.0f} s, source-domain holdout mIoU {holdout:.3f} -> {output}"
                  + (" [yellow]CUT SHORT by pretrain.max_seconds[/]" if cut_short else ""))
    return output


@torch.inference_mode()
def _holdout_miou(segmenter: torch.nn.Module, scenes: SourceScenes, device: torch.device, precision: str) -> float:
    """mIoU on unseen source scenes, tiled in non-overlapping ``image_size`` windows."""
    segmenter.eval()
    size, k = scenes.size, len(SOURCE_CLASSES)
    cm = np.zeros((k, k), dtype=np.int64)
    for image, label in scenes.holdout():
        h, w = label.shape
        windows = [(r, c) for r in range(0, h - size + 1, size) for c in range(0, w - size + 1, size)]
        batch = torch.stack([image[:, r : r + size, c : c + size] for r, c in windows]).to(device)
        with autocast_for(device, precision):
            pred = segmenter(batch).argmax(1).cpu().numpy()
        truth = torch.stack([label[r : r + size, c : c + size] for r, c in windows]).numpy()
        cm += confusion_matrix(pred, truth, k, IGNORE_INDEX)
    return float(segmentation_metrics(cm, list(SOURCE_CLASSES))["mIoU"])
