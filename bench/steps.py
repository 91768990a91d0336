"""Training step time per variant, measured through ``samsar.training.loop.Trainer``.

Each variant of params.yaml's ``variants`` gets a real ``Trainer`` (its segmenter, weighted
CE + Dice loss, AdamW, warm-up/cosine schedule, SAR-safe augmentation, autocast of
``train.precision``) on a small synthetic processed dataset (prepare + preprocess, 256 px
tiles). One timed step is what ``Trainer._train_epoch`` does per optimizer step: fetch the
next batch from the epoch's DataLoader, ``Trainer._micro_step`` (augment, forward under
``autocast_for``, loss), backward, optimizer step, zero_grad, scheduler step; with
``train.grad_accum`` > 1, that many micro-batches. ``decoder_only`` and ``parser`` are also
timed on the feature-cached path (``train.feature_cache``: cached trunk features, filled
before timing), the others only from images.

Variants are interleaved: one step of each per round, the order rotated every round, and the
median per variant is reported with its interquartile range. Time is elapsed wall time
(``time.perf_counter``, after ``torch.cuda.synchronize`` on GPU) with torch's default thread
count, whatever ``--clock`` the rest of the suite uses: this section reports the step time a
training run sees, before and after a speed change, not single-thread CPU work.

Before / after, seeds in turn vs side by side (CPU only; ``cwsam`` and ``decoder_only``, the
heaviest and the lightest): training every seed of ``train.seeds`` one after the other in one
process with torch's default threads at batch 4 (images/s = 4 / the step time above) against
what ``samsar.training.loop._train_seeds_in_processes`` does now: one spawned process per seed,
``seed_threads(len(seeds))`` torch threads each, batch ``train.batch_size`` of params.yaml. Each
process warms up, waits at a barrier until all are warm, then takes a fixed number of steps;
images/s = seeds x steps x batch / wall time from the barrier until the last process is done.

Overrides of params.yaml: tiny backbone, 256 px, batch 4, random-init base (no pretrain),
tracking off, no DataLoader workers; the rest (variants, their options, loss, augmentation,
precision, learning rates, seeds) is the project's.

    .venv/bin/python -m bench --only steps [--quick]
"""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import queue
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import torch
import yaml

BENCH_DIR = Path(__file__).resolve().parent
PARAMS_FILE = BENCH_DIR.parent / "params.yaml"
CACHED_VARIANTS = ("decoder_only", "parser")
SIDE_BY_SIDE = ("cwsam", "decoder_only")  # seeds in turn vs side by side: the heaviest and the lightest
BACKBONE, IMAGE_SIZE, BATCH_SIZE = "tiny", 256, 4


def project_params(root: Path, n_scenes: int) -> dict:
    """params.yaml of the repository with the small-default overrides, rooted at ``root``."""
    raw = yaml.safe_load(PARAMS_FILE.read_text()) if PARAMS_FILE.is_file() else {}
    data = raw.get("data") or {}
    classes = data.get("classes") or [{"name": n, "color": c} for n, c in
                                      (("building", [255, 0, 0]), ("water", [0, 0, 255]), ("background", [0, 0, 0]))]
    background = data.get("background", "background")
    raw["data"] = {"name": "bench-steps", "source": "synthetic", "classes": classes,
                   "background": background if background in {c["name"] for c in classes} else None,
                   "synthetic": {"n_scenes": n_scenes, "scene_size": 512, "looks": 1, "seed": 0}}
    raw["preprocess"] = {**(raw.get("preprocess") or {}), "tile_size": IMAGE_SIZE, "stride": IMAGE_SIZE,
                         "split": {"val": 0.25, "test": 0.25, "block_size": 512, "seed": 0}}
    raw["model"] = {"backbone": BACKBONE, "image_size": IMAGE_SIZE, "checkpoint": None, "gradient_checkpointing": False}
    raw["pretrain"] = {**(raw.get("pretrain") or {}), "enabled": False}
    raw["train"] = {**(raw.get("train") or {}), "batch_size": BATCH_SIZE, "num_workers": 0, "random_crop": None,
                    "max_seconds": None, "max_steps": None, "epochs": 1000}
    raw["tracking"] = {"enabled": False}
    raw.pop("root", None)
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return raw


@contextlib.contextmanager
def default_threads(threads: int) -> Iterator[int]:
    """torch on ``threads`` threads for the block (the suite's cpu clock pins it to one)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        torch.set_num_threads(before)


class TrainerStep:
    """One optimizer step of a real ``Trainer``, as its ``_train_epoch`` takes it; returns wall seconds."""

    def __init__(self, params, variant: str, ctx, seed: int = 0) -> None:
        from samsar.training.loop import Trainer

        kwargs = {"seed": seed} if "seed" in inspect.signature(Trainer).parameters else {}
        self.trainer = Trainer(params, variant, ctx, **kwargs)
        self.trainer.segmenter.train()
        self.device = ctx.device
        self.epoch, self.step, self._batches = 0, 0, iter(())
        self.index = 0

    def warm_cache(self) -> None:
        """Fill the feature cache (every dihedral version with augmentation) so timed steps only read it."""
        if self.trainer.cached is not None:
            self.trainer.cached.warm(batch_size=self.trainer.cfg.batch_size)

    @property
    def cached(self) -> bool:
        return self.trainer.cached is not None

    def _next_batch(self):
        from torch.utils.data import DataLoader

        t = self.trainer
        while True:
            try:
                return next(self._batches)
            except StopIteration:
                if self.index:  # an epoch ended: the next one (new order, new augmentation draws)
                    self.epoch += 1
                self.index = 0
                dataset = t.cached if t.cached is not None else t.train_tiles
                self._batches = iter(DataLoader(dataset, batch_sampler=t._epoch_batches(self.epoch), num_workers=t.cfg.num_workers))

    def __call__(self) -> float:
        t = self.trainer
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        start = time.perf_counter()
        for _ in range(t.cfg.grad_accum):
            batch = self._next_batch()
            loss = t._micro_step(batch, self.epoch, self.index)
            (loss / t.cfg.grad_accum).backward()
            self.index += 1
        t.optimizer.step()
        t.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        t.scheduler.step(min(self.step / 1000, 1.0))
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter() - start


def interleaved_times(runners: dict, rounds: int, warmup: int) -> dict[str, list[float]]:
    """Seconds of each call: ``warmup`` untimed calls each, then one call of each per round, order rotated."""
    for runner in runners.values():
        for _ in range(warmup):
            runner()
    names = list(runners)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            times[name].append(runners[name]())
    return times


def project_batch_size() -> int:
    """``train.batch_size`` of the repository's params.yaml (the batch seeds train with, not the override)."""
    from samsar.config import TrainConfig

    raw = yaml.safe_load(PARAMS_FILE.read_text()) if PARAMS_FILE.is_file() else {}
    return TrainConfig.model_validate((raw or {}).get("train") or {}).batch_size


def _seed_process(params, variant: str, seed: int, threads: int, warmup: int, steps: int, ready, done) -> None:
    """One seed's process: ``warmup`` steps, wait until every seed is warm, ``steps`` steps, report to ``done``."""
    from samsar.training.distributed import distributed_context

    torch.set_num_threads(threads)
    logging.getLogger("samsar").setLevel(logging.WARNING)
    try:
        with distributed_context() as ctx:
            step = TrainerStep(params, variant, ctx, seed)
            for _ in range(warmup):
                step()
            ready.wait(timeout=600)
            for _ in range(steps):
                step()
        done.put(None)
    except BaseException as error:
        ready.abort()
        done.put(f"seed {seed}: {error!r}")
        raise


def side_by_side_seconds(params, variant: str, threads: int, warmup: int, steps: int) -> float:
    """Wall seconds for every seed of ``train.seeds`` to take ``steps`` steps, each seed in its own spawned
    process on ``threads`` torch threads, all at once: from when all are warmed up until the last is done."""
    import multiprocessing

    mp = multiprocessing.get_context("spawn")
    seeds = params.train.seeds
    ready, done = mp.Barrier(len(seeds) + 1), mp.Queue()
    processes = [mp.Process(target=_seed_process, args=(params, variant, seed, threads, warmup, steps, ready, done))
                 for seed in seeds]
    for process in processes:
        process.start()
    try:
        ready.wait(timeout=600)
        start = time.perf_counter()
        errors = [done.get(timeout=600) for _ in processes]
        seconds = time.perf_counter() - start
    except (threading.BrokenBarrierError, queue.Empty) as error:
        errors, seconds = [f"a seed process failed or timed out ({error!r}); its traceback is on stderr"], 0.0
    finally:
        for process in processes:
            process.join(timeout=60)
            if process.is_alive():
                process.terminate()
    errors = [e for e in errors if e]
    if errors:
        raise RuntimeError(f"{variant}: seeds side by side: {'; '.join(errors)}")
    return seconds


def run(quick: bool, threads: int) -> dict:
    """Measure; return the suite's section dictionary."""
    from bench.suite import Check, section_result
    from samsar.config import load_params
    from samsar.data.prepare import prepare
    from samsar.data.preprocess import preprocess
    from samsar.evaluation.tiles import native_bf16
    from samsar.training.distributed import distributed_context
    from samsar.training.loop import seed_threads

    rounds, warmup, n_scenes, seed_steps = (5, 1, 4, 3) if quick else (12, 2, 4, 20)
    logging.getLogger("samsar").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="samsar-bench-steps-") as tmp, default_threads(threads), distributed_context() as ctx:
        root = Path(tmp)
        project_params(root, n_scenes)
        params = load_params(root / "params.yaml")
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            prepare(params)
            preprocess(params)
        data_s = time.perf_counter() - start
        uncached = params.model_copy(update={"train": params.train.model_copy(update={"feature_cache": False})})
        cached = params.model_copy(update={"train": params.train.model_copy(update={"feature_cache": True})})
        runners: dict[str, TrainerStep] = {v: TrainerStep(uncached, v, ctx) for v in params.variants}
        for variant in CACHED_VARIANTS:
            if variant in params.variants:
                runner = TrainerStep(cached, variant, ctx)
                if runner.cached:
                    runners[f"{variant} (cached)"] = runner
        start = time.perf_counter()
        for runner in runners.values():
            runner.warm_cache()
        fill_s = time.perf_counter() - start
        train_tiles = len(next(iter(runners.values())).trainer.train_tiles)
        times = interleaved_times(runners, rounds, warmup)
        # Seeds side by side (CPU only, as training does it); before = the step times just measured.
        n_seeds, seed_batch = len(params.train.seeds), project_batch_size()
        per_seed_threads = seed_threads(n_seeds)
        compared = [v for v in SIDE_BY_SIDE if v in params.variants] if ctx.device.type == "cpu" and n_seeds > 1 else []
        seed_params = uncached.model_copy(update={"train": uncached.train.model_copy(update={"batch_size": seed_batch})})
        side_s = {v: side_by_side_seconds(seed_params, v, per_seed_threads, warmup, seed_steps) for v in compared}

    base = statistics.median(times[params.variants[0]]) if params.variants else None
    figures = []
    for name, t in times.items():
        q1, median, q3 = statistics.quantiles(t, n=4, method="inclusive")
        median = statistics.median(t)
        figures.append({"variant": name, "step_s": round(median, 4), "iqr_s": round(q3 - q1, 4),
                        "images_per_s": round(BATCH_SIZE * params.train.grad_accum / median, 2),
                        f"vs_{params.variants[0]}": None if base is None else round(median / base, 3)})
    accum, checks = params.train.grad_accum, []
    for variant, seconds in side_s.items():
        before_step = statistics.median(times[variant])
        before, after = BATCH_SIZE * accum / before_step, n_seeds * seed_steps * seed_batch * accum / seconds
        figures.append({"variant": f"{variant}: {n_seeds} seeds", "before_img_s": round(before, 2), "after_img_s": round(after, 2),
                        "after_vs_before": round(after / before, 3), "before_step_s": round(n_seeds * before_step, 4),
                        "after_step_s": round(seconds / seed_steps, 4)})
        checks.append(Check(f"{variant}: seeds side by side / sequential throughput", after / before, 1.0, higher_is_better=True))
    device = ctx.device
    precision = params.train.precision
    autocast = "bf16" if precision == "bf16" or (precision == "auto" and native_bf16(device)) else "fp32"
    config = {"backbone": BACKBONE, "image_size": IMAGE_SIZE, "batch": BATCH_SIZE, "grad_accum": params.train.grad_accum,
              "precision": f"{precision} -> {autocast}", "variants": list(params.variants), "train_tiles": train_tiles,
              "rounds": rounds, "warmup": warmup, "device": str(device), "clock": "wall (perf_counter)",
              "torch_threads": threads, "params": str(PARAMS_FILE.name if PARAMS_FILE.is_file() else "defaults"),
              "seeds": list(params.train.seeds),
              "before": {"processes": 1, "threads": threads, "batch": BATCH_SIZE, "seeds": "in turn"},
              "after": {"processes": n_seeds, "threads_each": per_seed_threads, "batch": seed_batch, "seeds": "side by side",
                        "steps": seed_steps, "warmup": warmup, "variants": list(side_s)}}
    notes = [f"seconds per optimizer step (median of {rounds} interleaved rounds, after {warmup} warm-up steps each; iqr_s: "
             "interquartile range): DataLoader fetch + Trainer._micro_step (augment, forward under autocast, weighted CE + "
             "Dice) + backward + AdamW step + scheduler, as Trainer._train_epoch takes it",
             f"elapsed wall time with torch's default threads ({threads}), whatever the suite's --clock: on a shared "
             "machine the neighbours' load is in these figures; compare runs on the same machine at the same load",
             f"'(cached)': train.feature_cache path, features filled before timing (all dihedral versions; {fill_s:.1f} s "
             f"for all cached variants); synthetic data prepared in {data_s:.1f} s",
             "untrained random-init base (pretrain off); params.yaml otherwise",
             (f"'<variant>: {n_seeds} seeds' rows, training every seed of train.seeds {list(params.train.seeds)}: before = "
              f"seeds in turn in one process, {threads} threads, batch {BATCH_SIZE} (before_img_s = batch / step_s of the "
              f"variant's row; before_step_s = {n_seeds} x step_s, one step of every seed); after = one spawned process per "
              f"seed side by side, {per_seed_threads} thread(s) each (seed_threads), batch {seed_batch} (params.yaml), "
              f"{seed_steps} steps each after {warmup} warm-up, timed from a barrier once all are warm until the last is "
              f"done (after_img_s = {n_seeds} x {seed_steps} x {seed_batch} / that time; after_step_s = that time / "
              f"{seed_steps}); from images, no feature cache; after_vs_before >= 1: side by side pays")
             if side_s else "seeds side by side not compared: needs a CPU device and more than one seed in train.seeds"]
    return {**section_result(config, figures, checks, notes), "clock": "wall"}
