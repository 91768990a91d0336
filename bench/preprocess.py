"""Preprocessing throughput and peak memory on two scene sizes, measured in one run.

Generates a float32 GeoTIFF intensity scene plus a uint8 label GeoTIFF of each size (written
strip by strip), then runs ``prepare`` + ``preprocess`` (``data.source: scene``) on each in a
fresh child process. Reports MB/s of raw input for ``preprocess`` (and ``prepare``'s checking
pass) and the child's peak resident memory (VmHWM). Windowed reading should keep memory
set by the tile, not the scene: target peak(large) / peak(small) <= 1.5.

    .venv/bin/python -m bench.preprocess [--sizes 2048 8192] [--output bench/results_preprocess.json]
    python bench/preprocess.py            (same)
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import rasterio
import yaml
from rasterio.crs import CRS
from rasterio.transform import from_origin
from rasterio.windows import Window
from rich.console import Console
from rich.table import Table

from samsar.io import write_json

ROOT = Path(__file__).resolve().parents[1]

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "results_preprocess.json"
MEMORY_RATIO_TARGET = 1.5
CLASS_MEANS = np.array([2.0, 0.3, 0.02, 0.05, 0.1], dtype=np.float32)  # linear intensity per class
CLASSES = ["building", "vegetation", "water", "road", "background"]

# Runs in the child: prepare + preprocess, timing each, then the child's own peak RSS (KiB on Linux).
CHILD = textwrap.dedent(
    """
    import json, sys, time
    from bench.memory import peak_rss_mb
    from samsar.config import load_params
    from samsar.data.prepare import prepare
    from samsar.data.preprocess import preprocess
    params = load_params(sys.argv[1])
    t0 = time.perf_counter(); prepare(params)
    t1 = time.perf_counter(); preprocess(params)
    t2 = time.perf_counter()
    print(json.dumps({"prepare_s": t1 - t0, "preprocess_s": t2 - t1,
                      "peak_rss_mb": peak_rss_mb()}))
    """
)


def write_scene(folder: Path, size: int, seed: int = 0) -> tuple[Path, Path]:
    """A ``size x size`` float32 intensity GeoTIFF with speckle and its uint8 label, strip by strip."""
    rng = np.random.default_rng(seed)
    cells = rng.integers(0, len(CLASSES), size=(size // 128 + 1, size // 128 + 1), dtype=np.uint8)
    profile = {
        "driver": "GTiff", "width": size, "height": size, "count": 1, "tiled": True, "blockxsize": 256,
        "blockysize": 256, "crs": CRS.from_epsg(32610), "transform": from_origin(500000, 4200000, 10, 10),
    }  # fmt: skip
    image_path, label_path = folder / f"scene_{size}.tif", folder / f"scene_{size}_label.tif"
    with (
        rasterio.open(image_path, "w", dtype="float32", **profile) as image,
        rasterio.open(label_path, "w", dtype="uint8", **profile) as label,
    ):
        for row in range(0, size, 256):
            rows = np.arange(row, min(row + 256, size)) // 128
            strip_label = cells[rows][:, np.arange(size) // 128]
            speckle = rng.exponential(1.0, size=strip_label.shape).astype(np.float32)
            window = Window(0, row, size, len(rows))
            image.write(CLASS_MEANS[strip_label] * speckle, 1, window=window)
            label.write(strip_label, 1, window=window)
    return image_path, label_path


def write_params(folder: Path, image: Path, label: Path, size: int) -> Path:
    """Scene-source params; 8 x 8 split blocks whatever the size."""
    doc = {
        "data": {
            "name": "bench",
            "source": "scene",
            "classes": [{"name": n, "color": [i, i, i]} for i, n in enumerate(CLASSES)],
            "scene": {"image": str(image), "label": str(label)},
        },
        "preprocess": {"input_kind": "intensity", "to_db": True, "tile_size": 256, "stride": 256,
                       "split": {"val": 0.15, "test": 0.2, "block_size": max(256, size // 8), "seed": 0}},
    }  # fmt: skip
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def measure(size: int, workdir: Path) -> dict:
    """Generate one scene and preprocess it in a child process; return its figures."""
    folder = workdir / str(size)
    folder.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        image, label = write_scene(folder, size)
    params = write_params(folder, image, label, size)
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", CHILD, str(params)], capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"preprocess of the {size}px scene failed:\n{result.stderr}")
    child = json.loads(result.stdout.strip().splitlines()[-1])
    raw_mb = size * size * 4 / 1e6
    n_tiles = sum(1 for _ in (folder / "data" / "processed" / "images").iterdir())
    return {
        "size": size,
        "raw_mb": round(raw_mb, 1),
        "tiles": n_tiles,
        "prepare_s": round(child["prepare_s"], 2),
        "preprocess_s": round(child["preprocess_s"], 2),
        "prepare_mb_per_s": round(raw_mb / child["prepare_s"], 1),
        "preprocess_mb_per_s": round(raw_mb / child["preprocess_s"], 1),
        "peak_rss_mb": child["peak_rss_mb"],
        "child_wall_s": round(wall, 2),
    }


def run_sizes(sizes: list[int]) -> dict:
    """Measure every size (smallest first) in a temporary folder; return the results document."""
    with tempfile.TemporaryDirectory(prefix="samsar-bench-preprocess-") as tmp:
        figures = [measure(size, Path(tmp)) for size in sorted(sizes)]
    ratio = figures[-1]["peak_rss_mb"] / figures[0]["peak_rss_mb"]
    return {
        "status": "ok",
        "config": {"sizes": sorted(sizes), "tile_size": 256, "stride": 256, "dtype": "float32",
                   "python": platform.python_version(), "machine": platform.machine()},
        "figures": figures,
        "checks": [{
            "name": f"peak memory {figures[-1]['size']}px / {figures[0]['size']}px",
            "value": round(ratio, 3),
            "target": f"≤ {MEMORY_RATIO_TARGET:g}",
            "status": "PASS" if ratio <= MEMORY_RATIO_TARGET else "MISS",
        }],
        "notes": [
            "prepare: decode + NaN/Inf check + label scan + sha256 of both files; "
            "preprocess: block split, scaler fit on training tiles, tile writing (read window by window)",
            f"scene area ratio {(figures[-1]['size'] / figures[0]['size']) ** 2:g}x",
        ],
    }  # fmt: skip


def run(quick: bool) -> dict:
    """Section entry point for ``python -m bench`` (``quick``: 1024 and 4096 px)."""
    return run_sizes([1024, 4096] if quick else [2048, 8192])


def print_results(results: dict) -> None:
    console = Console(width=max(Console().width, 140))
    table = Table(title="preprocess: scene -> 256 px tiles")
    columns = list(results["figures"][0])
    for column in columns:
        table.add_column(column, justify="right")
    for row in results["figures"]:
        table.add_row(*(str(row[c]) for c in columns))
    console.print(table)
    for check in results["checks"]:
        console.print(f"{check['name']}: {check['value']:.3f}x (target {check['target']}) {check['status']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[2048, 8192], help="two scene sides in pixels")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    results = run_sizes(args.sizes)
    print_results(results)
    write_json(args.output, results)
    Console().print(f"written {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
