"""Training-step throughput of every variant relative to ``decoder_only``, and inference
latency of merged ``parser`` / ``lora`` relative to the base model, measured in one run.

CPU: tiny SAM at 256 px, batch 4, one thread, timed in CPU seconds of that thread (on a
shared machine wall time mostly measures the neighbours). CUDA: ViT-B at 1024 px, bf16
autocast, batch 2, wall time. Variants are timed in interleaved rounds (one step of each per
round, order rotated) and the median is reported, so load changes hit every variant alike.

Inference latency of merged ``parser`` / ``lora`` is measured against the base in paired
rounds (:func:`paired_ratios`: one call of each next to one of the base, ABAB, the median of the
per-round ratios), beside a second copy of the base measured the same way: the noise floor is how
far from 1 the copy's median ratio can land (the farther end of its 95 % confidence interval).

Targets: ``parser`` >= 0.95x the training throughput of ``decoder_only`` (the PARSER paper
measured 0.97x); merged ``parser`` / ``lora`` inference within 1 + max(0.01, noise floor) of
the base latency (merged layers are the base's layers: the same graph).

    .venv/bin/python -m bench.variants [--rounds 10] [--output bench/results_variants.json]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

from samsar.io import write_json
from samsar.models.variants import VARIANTS, build_segmenter

PARSER_TARGET = 0.95
MIN_LATENCY_TOLERANCE = 0.01  # identical graphs: within 1 %, or the measured noise floor if that is larger
INFERENCE_ROUNDS_FACTOR = 4  # inference calls are cheap; more rounds, tighter medians


def setting(device: torch.device) -> dict:
    """Backbone, size, batch and precision for this device."""
    if device.type == "cuda":
        return {"backbone": "vit_b", "image_size": 1024, "batch_size": 2, "precision": "bf16"}
    return {"backbone": "tiny", "image_size": 256, "batch_size": 4, "precision": "fp32"}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def clock(device: torch.device) -> float:
    """Wall time on CUDA; this thread's CPU time on the CPU (torch runs single-threaded there)."""
    return time.perf_counter() if device.type == "cuda" else time.thread_time()


def _autocast(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


class TrainStep:
    """One optimizer step of one variant on a fixed batch."""

    def __init__(self, variant: str, cfg: dict, num_classes: int, device: torch.device) -> None:
        self.segmenter = build_segmenter(variant, backbone=cfg["backbone"], image_size=cfg["image_size"],
                                         num_classes=num_classes).to(device).train()
        self.optimizer = torch.optim.AdamW(self.segmenter.param_groups(1e-4), weight_decay=0.01)
        self.device, self.precision = device, cfg["precision"]

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> float:
        _sync(self.device)
        start = clock(self.device)
        self.optimizer.zero_grad(set_to_none=True)
        with _autocast(self.device, self.precision):
            loss = F.cross_entropy(self.segmenter(images).float(), labels)
        loss.backward()
        self.optimizer.step()
        _sync(self.device)
        return clock(self.device) - start


class Inference:
    """One no-grad forward pass of a (possibly merged) segmenter."""

    def __init__(self, variant: str, cfg: dict, num_classes: int, device: torch.device, merge: bool) -> None:
        self.segmenter = build_segmenter(variant, backbone=cfg["backbone"], image_size=cfg["image_size"],
                                         num_classes=num_classes).eval()
        if merge:
            self.segmenter.merge()
        self.segmenter.to(device)
        self.device, self.precision = device, cfg["precision"]

    def copy(self) -> "Inference":
        """A second, identical model (same weights, its own tensors): measured against this one it
        gives the noise floor of a latency comparison."""
        twin = copy.copy(self)
        twin.segmenter = copy.deepcopy(self.segmenter)
        return twin

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> float:
        _sync(self.device)
        start = clock(self.device)
        with _autocast(self.device, self.precision):
            self.segmenter(images)
        _sync(self.device)
        return clock(self.device) - start


def interleaved_medians(runners: dict, images: torch.Tensor, labels: torch.Tensor, rounds: int, warmup: int) -> dict:
    """Median seconds per call of each runner: one call of each per round, the order rotated
    every round so no runner always goes first."""
    for runner in runners.values():
        for _ in range(warmup):
            runner(images, labels)
    names = list(runners)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            times[name].append(runners[name](images, labels))
    return {name: statistics.median(t) for name, t in times.items()}


def paired_ratios(runners: dict, base: str, images: torch.Tensor, labels: torch.Tensor, rounds: int, warmup: int) -> dict:
    """Latency of each runner relative to ``base``, from adjacent pairs of calls.

    Every round, each other runner (order rotated) is called right next to one call of ``base``,
    alternating base-first and base-second (ABAB), so drifts in machine speed hit both calls of a
    pair alike. Returns ``{name: {"latency_s", "ratio", "ratio_iqr", "ratio_ci", "ratios"}}``: median
    seconds, median of the per-round ratios runner / base, their interquartile range and the 95 %
    confidence interval of that median (:func:`median_ci`); ``base`` gets the median of all its
    calls and ratio 1.
    """
    for runner in runners.values():
        for _ in range(warmup):
            runner(images, labels)
    others = [name for name in runners if name != base]
    seconds: dict[str, list[float]] = {name: [] for name in runners}
    ratios: dict[str, list[float]] = {name: [] for name in others}
    for r in range(rounds):
        for i, name in enumerate(others[r % len(others):] + others[: r % len(others)]):
            if (r + i) % 2 == 0:
                t_base = runners[base](images, labels)
                t_other = runners[name](images, labels)
            else:
                t_other = runners[name](images, labels)
                t_base = runners[base](images, labels)
            seconds[base].append(t_base)
            seconds[name].append(t_other)
            ratios[name].append(t_other / t_base)
    result = {base: {"latency_s": statistics.median(seconds[base]), "ratio": 1.0, "ratio_iqr": 0.0, "ratio_ci": (1.0, 1.0),
                     "ratios": []}}
    for name in others:
        q1, _, q3 = statistics.quantiles(ratios[name], n=4, method="inclusive")
        result[name] = {"latency_s": statistics.median(seconds[name]), "ratio": statistics.median(ratios[name]),
                        "ratio_iqr": q3 - q1, "ratio_ci": median_ci(ratios[name]), "ratios": ratios[name]}
    return result


def median_ci(values: list[float], z: float = 1.96) -> tuple[float, float]:
    """Distribution-free ~95 % confidence interval of the median: the order statistics
    ``k = (n - z sqrt(n)) / 2`` in from either end (the whole range for very few values)."""
    ordered = sorted(values)
    n = len(ordered)
    k = max(int((n - z * n**0.5) / 2), 0)
    return ordered[k], ordered[n - 1 - k]


def noise_floor(copy_result: dict) -> float:
    """How far from 1 two identical graphs' median latency ratio can land in this measurement: the
    farther end of the 95 % interval of the base copy's median ratio."""
    lo, hi = copy_result["ratio_ci"]
    return max(abs(lo - 1.0), abs(hi - 1.0))


def latency_tolerance(noise_floor: float) -> float:
    """Allowed latency ratio of two graphs that should be identical: 1 + max(1 %, noise floor)."""
    return 1.0 + max(MIN_LATENCY_TOLERANCE, noise_floor)


def run(rounds: int, warmup: int, num_classes: int, device: torch.device) -> dict:
    """Measure everything; return the results dictionary."""
    cfg = setting(device)
    generator = torch.Generator().manual_seed(0)
    shape = (cfg["batch_size"], 3, cfg["image_size"], cfg["image_size"])
    images = torch.rand(shape, generator=generator).to(device)
    labels = torch.randint(0, num_classes, (shape[0], *shape[2:]), generator=generator).to(device)

    train = interleaved_medians({v: TrainStep(v, cfg, num_classes, device) for v in VARIANTS},
                                images, labels, rounds, warmup)
    base_step = train["decoder_only"]
    training = {v: {"step_s": s, "images_per_s": cfg["batch_size"] / s, "throughput_vs_decoder_only": base_step / s}
                for v, s in train.items()}

    base = Inference("decoder_only", cfg, num_classes, device, merge=False)
    infer = paired_ratios(
        {"base": base, "base_copy": base.copy(),
         "parser_merged": Inference("parser", cfg, num_classes, device, merge=True),
         "lora_merged": Inference("lora", cfg, num_classes, device, merge=True)},
        "base", images, labels, INFERENCE_ROUNDS_FACTOR * rounds, warmup)
    inference = {n: {"latency_s": r["latency_s"], "latency_vs_base": r["ratio"], "ratio_iqr": r["ratio_iqr"],
                     "ratio_ci95": list(r["ratio_ci"])} for n, r in infer.items()}
    noise = noise_floor(infer["base_copy"])
    merged_target = latency_tolerance(noise)

    parser_ratio = training["parser"]["throughput_vs_decoder_only"]
    merged_worst = max(inference["parser_merged"]["latency_vs_base"], inference["lora_merged"]["latency_vs_base"])
    return {
        "setting": {**cfg, "device": str(device), "rounds": rounds, "warmup": warmup, "num_classes": num_classes,
                    "torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine(),
                    "clock": "wall" if device.type == "cuda" else "thread CPU time"},
        "training": training,
        "inference": inference,
        "noise_floor": noise,
        "targets": {
            "parser_throughput_vs_decoder_only": {"target": PARSER_TARGET, "measured": parser_ratio,
                                                  "met": parser_ratio >= PARSER_TARGET},
            "merged_latency_vs_base": {"target": merged_target, "measured": merged_worst, "noise_floor": noise,
                                       "met": merged_worst <= merged_target},
        },
    }


def print_results(results: dict) -> None:
    console = Console()
    s = results["setting"]
    table = Table(title=f"Training step: {s['backbone']} {s['image_size']} px, batch {s['batch_size']}, "
                        f"{s['precision']}, {s['device']} (median of {s['rounds']} interleaved rounds)")
    for column in ("variant", "step (ms)", "images/s", "throughput vs decoder_only"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for v, r in results["training"].items():
        table.add_row(v, f"{r['step_s'] * 1e3:.1f}", f"{r['images_per_s']:.2f}", f"{r['throughput_vs_decoder_only']:.3f}x")
    console.print(table)
    table = Table(title="Inference latency (merged methods vs the base model; paired rounds, median of ratios)")
    for column in ("model", "latency (ms)", "vs base", "95% interval", "ratio IQR"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for n, r in results["inference"].items():
        lo, hi = r["ratio_ci95"]
        table.add_row(n, f"{r['latency_s'] * 1e3:.1f}", f"{r['latency_vs_base']:.3f}x", f"{lo:.3f}-{hi:.3f}", f"{r['ratio_iqr']:.3f}")
    console.print(table)
    console.print(f"noise floor (base_copy vs base, farther end of its 95% interval): {results['noise_floor']:.4f}")
    for name, t in results["targets"].items():
        verdict = "[green]met[/]" if t["met"] else "[red]NOT met[/]"
        console.print(f"{name}: {t['measured']:.3f} (target {t['target']:.3f}) {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--output", type=Path, default=Path(__file__).resolve().parent / "results_variants.json")
    args = parser.parse_args()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    if device.type == "cpu":
        torch.set_num_threads(1)
    results = run(args.rounds, args.warmup, args.classes, device)
    print_results(results)
    write_json(args.output, results)
    Console().print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
