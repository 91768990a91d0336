"""samsar benchmark suite: speed and memory figures measured in one run, against their targets.

``python -m bench [--quick] [--only SECTION ...] [--output bench/results.json]``

Sections (each prints its figures and PASS/MISS checks; all go to ``bench/results.json`` with
the machine they ran on):

- ``preprocess``: preprocessing throughput and memory (``bench/preprocess.py``, data engineer);
- ``variants``: training-step throughput per variant relative to ``decoder_only`` and merged
  inference latency vs the base (``bench/variants.py``, models engineer);
- ``cache``: epoch time with and without cached trunk features (``parser``, ``decoder_only``),
  judged as a fraction of its FLOP bound;
- ``merge``: inference latency of merged vs unmerged ``parser`` and ``lora``, in paired rounds
  against the base, beside the noise floor (the base against a copy of itself);
- ``steps``: seconds per optimizer step of every variant through ``samsar.training.loop.Trainer``
  (tiny, 256 px, batch 4, ``train.precision``), plus the feature-cached path; wall time with
  torch's default threads whatever ``--clock`` says (``bench/steps.py``);
- ``predict``: ``samsar predict`` throughput and peak memory on two synthetic GeoTIFF scenes;
- ``gpu``: ViT-B 1024 bf16 training images/s per variant beside the SAM-PARSER paper, and
  model FLOP utilisation (CUDA only).

Models are untrained (random init): timings do not depend on the weights.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

from bench.memory import peak_rss_mb
from samsar.io import write_json

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "results.json"
NUM_CLASSES = 5
CLASS_NAMES = ["building", "vegetation", "water", "road", "background"]
CLASS_COLORS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 0, 0)]

# SAM-PARSER (Peng et al., AAAI 2024, arXiv 2308.14604), efficiency table: ViT-B, one GPU, img/s.
PAPER_IMAGES_PER_S = {"decoder_only": 6.0, "parser": 5.8, "lora": 3.4, "adapter": 2.9}
# Dense bf16 tensor-core peak, FLOP/s, by device name fragment.
PEAK_BF16_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12}

console = Console()
# torch's thread count before --clock cpu pins it to one (the steps section measures with it).
DEFAULT_THREADS = torch.get_num_threads()
CACHE_BOUND_FRACTION = 0.9  # cached speed-up >= this fraction of its FLOP (Amdahl) bound


@dataclass(frozen=True)
class Check:
    """A measured figure against its target."""

    name: str
    value: float
    target: float
    higher_is_better: bool

    @property
    def passed(self) -> bool:
        return self.value >= self.target if self.higher_is_better else self.value <= self.target

    def as_dict(self) -> dict:
        return {"name": self.name, "value": round(self.value, 4), "target": ("≥ " if self.higher_is_better else "≤ ") + f"{self.target:g}",
                "status": "PASS" if self.passed else "MISS"}


def section_result(config: dict, figures: list[dict], checks: list[Check] = (), notes: list[str] = ()) -> dict:
    """The JSON form of one section."""
    return {"status": "ok", "config": config, "figures": figures, "checks": [c.as_dict() for c in checks], "notes": list(notes)}


def skipped(reason: str) -> dict:
    return {"status": "skipped", "notes": [reason], "figures": [], "checks": []}


# ---------------------------------------------------------------- machine and timing helpers


def machine_info() -> dict:
    """CPU model, cores, torch version and compute device of this run."""
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "device": device}


# "wall": elapsed time (GPU, or a CPU the run has to itself). "cpu": CPU time of this process
# with torch on one thread: on a CPU shared with other jobs, wall-clock ratios measure the
# neighbours, while single-thread CPU time measures the work.
CLOCKS = ("wall", "cpu")
_clock = {"kind": "wall"}


def set_clock(kind: str) -> None:
    """Choose how sections measure time (see CLOCKS); "cpu" pins torch to one thread."""
    _clock["kind"] = kind
    if kind == "cpu":
        torch.set_num_threads(1)


def clock(device: torch.device | None = None) -> float:
    """Seconds on the chosen clock, after waiting for queued GPU work."""
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.process_time() if _clock["kind"] == "cpu" else time.perf_counter()


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _segmenter(variant: str, backbone: str, image_size: int, device: torch.device):
    from samsar.models.variants import build_segmenter

    return build_segmenter(variant, backbone=backbone, image_size=image_size, num_classes=NUM_CLASSES).to(device)


def _batch(batch_size: int, image_size: int, device: torch.device, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(batch_size, 3, image_size, image_size, generator=g)
    labels = torch.randint(0, NUM_CLASSES, (batch_size, image_size, image_size), generator=g)
    return images.to(device), labels.to(device)


def train_step_seconds(model_forward: Callable, optimizer: torch.optim.Optimizer, inputs: torch.Tensor, labels: torch.Tensor,
                       steps: int, warmup: int = 1, bf16: bool = False) -> float:
    """Mean seconds of one training step (forward, cross-entropy, backward, optimizer step)."""
    device = labels.device
    for i in range(warmup + steps):
        if i == warmup:
            start = clock(device)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model_forward(inputs)
        loss = F.cross_entropy(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return (clock(device) - start) / steps


def _optimizer(segmenter) -> torch.optim.Optimizer:
    return torch.optim.AdamW(segmenter.param_groups(1e-4))


# ---------------------------------------------------------------- sections


def bench_preprocess(quick: bool) -> dict:
    """Preprocessing throughput and peak memory (``bench/preprocess.py``, data engineer)."""
    if importlib.util.find_spec("bench.preprocess") is None:
        return skipped("bench/preprocess.py is not present")
    from bench import preprocess

    return preprocess.run(quick)


def bench_variants(quick: bool) -> dict:
    """Training-step throughput per variant relative to decoder_only (``bench/variants.py``, models engineer)."""
    if importlib.util.find_spec("bench.variants") is None:
        return skipped("bench/variants.py is not present")
    from bench import variants

    rounds, warmup = (3, 1) if quick else (10, 2)
    result = variants.run(rounds=rounds, warmup=warmup, num_classes=NUM_CLASSES, device=_device())
    figures = [{"variant": v, "step_s": round(r["step_s"], 4), "images_per_s": round(r["images_per_s"], 2),
                "throughput_vs_decoder_only": round(r["throughput_vs_decoder_only"], 3)} for v, r in result["training"].items()]
    figures += [{"variant": f"inference: {n}", "step_s": round(r["latency_s"], 4), "latency_vs_base": round(r["latency_vs_base"], 3),
                 "ci95": "{:.3f}-{:.3f}".format(*r["ratio_ci95"]), "ratio_iqr": round(r["ratio_iqr"], 3)}
                for n, r in result["inference"].items()]
    targets = result["targets"]
    checks = [Check("parser training throughput / decoder_only", targets["parser_throughput_vs_decoder_only"]["measured"],
                    targets["parser_throughput_vs_decoder_only"]["target"], higher_is_better=True),
              Check("worst merged inference latency / base", targets["merged_latency_vs_base"]["measured"],
                    targets["merged_latency_vs_base"]["target"], higher_is_better=False)]
    notes = ["measured by bench/variants.py: training, median of interleaved rounds; inference, median of per-round "
             "ratios to the base in paired (ABAB) rounds (its clock is in the config line)",
             f"noise floor (base copy vs base, farther end of its 95% interval) = {result['noise_floor']:.4f}; "
             "merged target = 1 + max(0.01, noise floor)"]
    return section_result(result["setting"], figures, checks, notes)


def bench_cache(quick: bool) -> dict:
    """Epoch time of parser and decoder_only training, uncached vs from cached trunk features,
    against the FLOP bound of what a trunk cache can save."""
    from torch.utils.data import DataLoader

    from samsar.training.feature_cache import CachedFeatureDataset, FeatureCache

    device = _device()
    backbone, size, n_tiles, epochs, batch = ("tiny", 256, 8, 4, 2) if quick else ("vit_b", 512, 4, 2, 2)
    g = torch.Generator().manual_seed(0)
    tiles = [{"image": torch.rand(3, size, size, generator=g), "label": torch.randint(0, NUM_CLASSES, (size, size), generator=g),
              "tile_id": f"t{i}"} for i in range(n_tiles)]
    figures, checks = [], []
    for variant in ("decoder_only", "parser"):
        segmenter = _segmenter(variant, backbone, size, device).train()
        optimizer = _optimizer(segmenter)

        def uncached_epoch(steps: int | None = None) -> float:
            start = clock(device)
            for b in list(range(0, n_tiles, batch))[:steps]:
                chunk = tiles[b : b + batch]
                images = torch.stack([t["image"] for t in chunk]).to(device)
                labels = torch.stack([t["label"] for t in chunk]).to(device)
                train_step_seconds(segmenter, optimizer, images, labels, steps=1, warmup=0)
            return clock(device) - start

        def cached_epoch(steps: int | None = None) -> float:
            start = clock(device)
            for items in list(loader)[:steps] if steps else loader:
                features, labels = dataset.batch_features(items)
                train_step_seconds(segmenter.forward_from_trunk, optimizer, features.to(device), labels.to(device), steps=1, warmup=0)
            return clock(device) - start

        with tempfile.TemporaryDirectory(prefix="samsar-bench-cache-") as cache_dir:
            dataset = CachedFeatureDataset(tiles, segmenter, FeatureCache.for_segmenter(cache_dir, segmenter))
            start = clock(device)
            dataset.warm(batch_size=batch)
            fill = clock(device) - start
            loader = DataLoader(dataset, batch_size=batch, shuffle=False)
            run_epoch = {"uncached": uncached_epoch, "cached": cached_epoch}
            for run in run_epoch.values():
                run(steps=1)  # warm-up: first-call allocations
            seconds = {"uncached": [], "cached": []}
            for r in range(epochs):  # interleaved epochs, order alternating: load drifts hit both paths alike
                for kind in (("uncached", "cached") if r % 2 == 0 else ("cached", "uncached")):
                    seconds[kind].append(run_epoch[kind]())
        uncached, cached = seconds["uncached"], seconds["cached"]
        speedup = statistics.median(uncached) / statistics.median(cached)
        bound = cache_speedup_bound(variant, backbone, size)
        figures.append({"variant": variant, "uncached_epoch_s": round(statistics.median(uncached), 3),
                        "cache_fill_s": round(fill, 3), "cached_epoch_s": round(statistics.median(cached), 4), "speedup": round(speedup, 2),
                        "flop_bound": round(bound, 2), "of_bound": round(speedup / bound, 3)})
        checks.append(Check(f"{variant}: cached speed-up / flop_bound", speedup / bound, CACHE_BOUND_FRACTION, higher_is_better=True))
        del segmenter, optimizer
    config = {"backbone": backbone, "image_size": size, "tiles": n_tiles, "epochs": epochs, "batch": batch, "device": str(device)}
    notes = ["cache filled once (no augmentation) before timing; fill time is the one-off trunk pass; then one untimed "
             "step of each path, and uncached and cached epochs alternate (median of each)",
             "flop_bound: 1 + trunk forward FLOPs / (neck + head forward and backward FLOPs), the most any trunk cache can "
             "gain (matmul/conv FLOPs, FlopCounterMode); the check is speedup / flop_bound (of_bound) >= "
             f"{CACHE_BOUND_FRACTION:g}: the cache realises that share of what skipping the trunk can save"]
    return section_result(config, figures, checks, notes)


def cache_speedup_bound(variant: str, backbone: str, size: int) -> float:
    """Amdahl bound of the trunk cache: what still runs on cached features is the neck and head,
    forward and backward. Counted on the meta device (shapes only, no compute)."""
    from torch.utils.flop_counter import FlopCounterMode

    from samsar.models.variants import build_segmenter

    segmenter = build_segmenter(variant, backbone=backbone, image_size=size, num_classes=NUM_CLASSES, device="meta")
    with FlopCounterMode(display=False) as trunk, torch.no_grad():
        features = segmenter.trunk_features(torch.empty(1, 3, size, size, device="meta"))
    with FlopCounterMode(display=False) as head:
        segmenter.forward_from_trunk(features).sum().backward()
    return 1.0 + trunk.get_total_flops() / head.get_total_flops()


def bench_merge(quick: bool) -> dict:
    """Inference latency of parser and lora before and after merge(), against decoder_only (nothing to
    merge) in paired rounds, beside the noise floor: decoder_only against a copy of itself."""
    import copy

    from bench.variants import latency_tolerance, noise_floor, paired_ratios

    device = _device()
    backbone, size, batch, rounds = ("tiny", 256, 4, 30) if quick else ("vit_b", 512, 1, 20)
    images, labels = _batch(batch, size, device)
    base = _segmenter("decoder_only", backbone, size, device).eval()
    models = {"decoder_only": base, "decoder_only copy": copy.deepcopy(base)}
    for variant in ("parser", "lora"):
        models[f"{variant} unmerged"] = _segmenter(variant, backbone, size, device).eval()
        models[f"{variant} merged"] = _segmenter(variant, backbone, size, device).eval()
        models[f"{variant} merged"].merge()

    def runner(model):
        @torch.inference_mode()
        def forward_seconds(x: torch.Tensor, _labels: torch.Tensor) -> float:
            start = clock(device)
            model(x)
            return clock(device) - start

        return forward_seconds

    measured = paired_ratios({name: runner(m) for name, m in models.items()}, "decoder_only", images, labels, rounds, warmup=2)
    noise = noise_floor(measured["decoder_only copy"])
    tolerance = latency_tolerance(noise)
    figures = [{"model": name, "latency_s": round(r["latency_s"], 4), "vs_decoder_only": round(r["ratio"], 4),
                "ci95": f"{r['ratio_ci'][0]:.3f}-{r['ratio_ci'][1]:.3f}", "ratio_iqr": round(r["ratio_iqr"], 4)}
               for name, r in measured.items()]
    figures.append({"model": "noise floor (copy)", "vs_decoder_only": round(noise, 4)})
    checks = []
    for variant in ("parser", "lora"):
        merged, unmerged = measured[f"{variant} merged"]["ratio"], measured[f"{variant} unmerged"]["ratio"]
        checks.append(Check(f"{variant}: merged / unmerged latency", merged / unmerged, tolerance, higher_is_better=False))
        checks.append(Check(f"{variant}: merged / decoder_only latency", merged, tolerance, higher_is_better=False))
    config = {"backbone": backbone, "image_size": size, "batch": batch, "rounds": rounds, "device": str(device),
              "noise_floor": round(noise, 4), "tolerance": round(tolerance, 4)}
    notes = ["paired rounds (bench.variants.paired_ratios): each round every model runs next to one decoder_only call, "
             "alternating before/after (ABAB), order rotated; vs_decoder_only is the median of the per-round ratios, "
             "ci95 the distribution-free 95% interval of that median, ratio_iqr the per-round ratios' interquartile range; "
             "inference mode",
             "noise floor: a deep copy of decoder_only (identical graph and weights) measured the same way; the farther "
             "end of its ci95 from 1, i.e. how far two identical graphs can measure apart here; target = "
             "1 + max(0.01, noise floor)"]
    return section_result(config, figures, checks, notes)


def bench_steps(quick: bool) -> dict:
    """Seconds per optimizer step of every variant through the real Trainer, plus the feature-cached path
    (``bench/steps.py``); elapsed wall time with torch's default threads."""
    from bench import steps

    return steps.run(quick, DEFAULT_THREADS)


def bench_predict(quick: bool) -> dict:
    """``samsar predict`` on two synthetic float32 GeoTIFF scenes, each in a fresh child process."""
    from samsar.config import VariantOptions
    from samsar.data.scaling import SarScaler
    from samsar.models.artifacts import save_adapter
    from samsar.models.variants import build_segmenter

    sides = (1024, 4096) if quick else (2048, 8192)
    batch_size = 8
    figures, checks = [], []
    with tempfile.TemporaryDirectory(prefix="samsar-bench-predict-") as tmp:
        tmp = Path(tmp)
        segmenter = build_segmenter("decoder_only", backbone="tiny", image_size=256, num_classes=NUM_CLASSES, options=VariantOptions())
        scaler = _bench_scaler(SarScaler)
        save_adapter(segmenter, tmp / "adapter", {"class_names": CLASS_NAMES, "class_colors": CLASS_COLORS, "scaling": scaler.to_dict()})
        for side in sides:
            scene = tmp / f"scene_{side}.tif"
            write_synthetic_scene(scene, side)
            out = subprocess.run(
                [sys.executable, "-m", "bench", "predict-child", str(tmp / "adapter"), str(scene), str(tmp / f"out_{side}" / "classes.tif"),
                 str(batch_size), _clock["kind"]],
                capture_output=True, text=True, cwd=BENCH_DIR.parent,
            )
            if out.returncode != 0:
                raise RuntimeError(f"predict child failed on {scene}:\n{out.stderr[-4000:]}")
            figure = json.loads(out.stdout.strip().splitlines()[-1])
            figures.append({"scene": f"{side}x{side}", **figure})
            scene.unlink()
    small, large = figures
    checks.append(Check(f"{large['scene']} predict / bare forward throughput", large["fraction_of_forward"], 0.9, higher_is_better=True))
    checks.append(Check(f"{small['scene']} predict / bare forward throughput", small["fraction_of_forward"], 0.9, higher_is_better=True))
    checks.append(Check(f"peak memory {large['scene']} / {small['scene']}", large["peak_rss_mb"] / small["peak_rss_mb"], 1.3,
                        higher_is_better=False))
    config = {"model": "tiny decoder_only, 256 px windows, random init", "overlap": 0.25, "batch_size": batch_size,
              "scenes": "float32 GeoTIFF, EPSG:32633, 10 m pixels", "device": str(_device())}
    notes = ["tiny model (on CPU a ViT-B window takes seconds)",
             "fraction_of_forward: time in the model calls (forward + softmax) / the predict run (open, read, scale, "
             "blend, write, preview, areas) on the same batches; seconds exclude the one-off model loading (load_s)",
             "peak memory = the child process's peak RSS (VmHWM; its ru_maxrss would include the parent's RSS at fork)"]
    return section_result(config, figures, checks, notes)


def _bench_scaler(scaler_cls):
    """A scaler fitted on synthetic intensity samples (prediction cost does not depend on the stats)."""
    samples = np.random.default_rng(0).gamma(1.0, 0.1, size=(256, 256)).astype(np.float32)
    return scaler_cls(input_kind="intensity", to_db=True).fit([samples])


def write_synthetic_scene(path: Path, side: int, rows_per_write: int = 512) -> None:
    """A ``side x side`` float32 intensity GeoTIFF (EPSG:32633, 10 m pixels), written in strips."""
    import rasterio
    from affine import Affine
    from rasterio.windows import Window

    rng = np.random.default_rng(side)
    profile = dict(driver="GTiff", height=side, width=side, count=1, dtype="float32", crs="EPSG:32633",
                   transform=Affine(10.0, 0, 500000.0, 0, -10.0, 4_600_000.0), tiled=True, blockxsize=256, blockysize=256)
    cols = np.arange(side, dtype=np.float32)
    with rasterio.Env(GDAL_CACHEMAX=64), rasterio.open(path, "w", **profile) as ds:
        for row0 in range(0, side, rows_per_write):
            rows = np.arange(row0, min(row0 + rows_per_write, side), dtype=np.float32)[:, None]
            pattern = 0.05 + 0.1 * (np.sin(rows / 300.0) + np.cos(cols / 200.0) + 2.0)
            ds.write((pattern * rng.exponential(1.0, size=(len(rows), side))).astype(np.float32), 1,
                     window=Window(0, row0, side, len(rows)))


def predict_child(adapter: str, scene: str, output: str, batch_size: str, clock_kind: str) -> None:
    """Run in a fresh process: predict one scene; print one JSON line with its throughput, the
    throughput of the bare model calls on the very batches it ran, and this process's peak RSS.

    The model calls and the one-off model loading are timed inside the run by wrapping
    ``Predictor.window_probabilities`` and ``predict.load_model`` (instrumentation of this child only).
    """
    from samsar.inference import predict
    from samsar.inference.predictor import Predictor

    set_clock(clock_kind)
    device = _device()
    spent = {"model_calls": 0.0, "loading": 0.0}

    def timed(function, key):
        def wrapper(*args, **kwargs):
            start = clock(device)
            result = function(*args, **kwargs)
            spent[key] += clock(device) - start
            return result

        return wrapper

    Predictor.window_probabilities = timed(Predictor.window_probabilities, "model_calls")
    predict.load_model = timed(predict.load_model, "loading")
    start = clock(device)
    result = predict.predict_scene(adapter, scene, output, batch_size=int(batch_size), device=str(device), overwrite=True)
    seconds = clock(device) - start - spent["loading"]
    print(json.dumps({"windows": result.windows, "load_s": round(spent["loading"], 2), "seconds": round(seconds, 2),
                      "windows_per_s": round(result.windows / seconds, 2),
                      "forward_windows_per_s": round(result.windows / spent["model_calls"], 2),
                      "fraction_of_forward": round(spent["model_calls"] / seconds, 3), "peak_rss_mb": peak_rss_mb()}))


def bench_gpu(quick: bool) -> dict:
    """ViT-B 1024 training images/s per variant in bf16, beside the paper, and model FLOP utilisation."""
    if not torch.cuda.is_available():
        return skipped("no CUDA device: ViT-B 1024 training throughput is measured on GPU workers only")
    name = torch.cuda.get_device_name(0)
    peak = next((v for k, v in PEAK_BF16_FLOPS.items() if k in name), None)
    batch, steps = (2, 3) if quick else (4, 10)
    figures = training_throughput(torch.device("cuda"), "vit_b", 1024, batch, steps, peak)
    notes = ["paper: SAM-PARSER (Peng et al., AAAI 2024) efficiency table, ViT-B, one GPU, box prompts; ours: classwise head, "
             f"batch {batch}, bf16 autocast, AdamW"]
    if peak is None:
        notes.append(f"no bf16 peak known for '{name}': MFU not computed")
    config = {"backbone": "vit_b", "image_size": 1024, "batch": batch, "steps": steps, "device": name,
              "peak_bf16_tflops": None if peak is None else peak / 1e12}
    return section_result(config, figures, notes=notes)


def training_throughput(device: torch.device, backbone: str, size: int, batch: int, steps: int, peak_flops: float | None) -> list[dict]:
    """Per variant: training images/s (bf16 autocast), matmul/conv FLOPs per training image, and MFU."""
    from torch.utils.flop_counter import FlopCounterMode

    images, labels = _batch(batch, size, device)
    figures = []
    for variant in ("decoder_only", "parser", "lora", "adapter", "cwsam"):
        segmenter = _segmenter(variant, backbone, size, device).train()
        optimizer = _optimizer(segmenter)
        with FlopCounterMode(display=False) as counter:
            train_step_seconds(segmenter, optimizer, images, labels, steps=1, warmup=0, bf16=True)
        flops_per_image = counter.get_total_flops() / batch
        images_per_s = batch / train_step_seconds(segmenter, optimizer, images, labels, steps=steps, warmup=2, bf16=True)
        figures.append({"variant": variant, "images_per_s": round(images_per_s, 2), "paper_images_per_s": PAPER_IMAGES_PER_S.get(variant),
                        "train_tflops_per_image": round(flops_per_image / 1e12, 4),
                        "mfu": None if peak_flops is None else round(flops_per_image * images_per_s / peak_flops, 4)})
        del segmenter, optimizer
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return figures


SECTIONS: dict[str, Callable[[bool], dict]] = {
    "preprocess": bench_preprocess,
    "variants": bench_variants,
    "cache": bench_cache,
    "merge": bench_merge,
    "steps": bench_steps,
    "predict": bench_predict,
    "gpu": bench_gpu,
}


# ---------------------------------------------------------------- output


def print_section(name: str, result: dict) -> None:
    """One rich table of figures, one of checks, then notes."""
    console.rule(f"[bold]{name}[/bold] ({result['status']})")
    if result.get("config"):
        console.print(", ".join(f"{k}={v}" for k, v in result["config"].items()), style="dim")
    if result["figures"]:
        table = Table(show_header=True)
        columns = list(dict.fromkeys(k for row in result["figures"] for k in row))
        for column in columns:
            table.add_column(column)
        for row in result["figures"]:
            table.add_row(*("" if row.get(c) is None else str(row[c]) for c in columns))
        console.print(table)
    if result["checks"]:
        table = Table("check", "value", "target", "result")
        for check in result["checks"]:
            style = "green" if check["status"] == "PASS" else "red"
            table.add_row(check["name"], f"{check['value']:g}", check["target"], f"[{style}]{check['status']}[/{style}]")
        console.print(table)
    for note in result.get("notes", []):
        console.print(f"note: {note}", style="dim")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["predict-child"]:
        predict_child(*argv[1:])
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=list(SECTIONS), help="run only these sections")
    parser.add_argument("--quick", action="store_true", help="tiny backbone and small sizes (smoke run)")
    parser.add_argument("--output", type=Path, default=RESULTS, help="results JSON (default: bench/results.json)")
    parser.add_argument("--clock", choices=("auto", *CLOCKS), default="auto",
                        help="wall time, or single-thread process CPU time (robust on a shared CPU); auto: cpu without CUDA")
    args = parser.parse_args(argv)
    set_clock(("wall" if torch.cuda.is_available() else "cpu") if args.clock == "auto" else args.clock)
    # Sections not run now keep their earlier figures; each records when and how it was measured.
    results = json.loads(args.output.read_text()) if args.output.is_file() else {"sections": {}}
    results["machine"] = {**machine_info(), "clock": _clock["kind"]}
    console.print(results["machine"])
    for name in args.only or SECTIONS:
        start = time.perf_counter()
        result = SECTIONS[name](args.quick)
        section_clock = result.pop("clock", _clock["kind"])  # a section may use its own clock (steps: wall)
        results["sections"][name] = {**result, "quick": args.quick, "clock": section_clock, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                     "seconds": round(time.perf_counter() - start, 1)}
        print_section(name, results["sections"][name])
    write_json(args.output, results)
    console.print(f"results written to {args.output}")
    return 0
