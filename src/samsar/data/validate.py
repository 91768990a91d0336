"""Stage ``validate``: check the processed dataset and report every problem at once.

Checks: the manifest against its pandera schema (lazy, all failures collected); every tile file
(readable, shapes, dtype, finite values in [0, 1], label values in the class set or the ignore
index, pixel counts and content hash matching the manifest); each split non-empty; no tile
content shared between splits; every class of the test split present in training. When a split
check fails, its message names the ``preprocess.split`` settings that would pass, found by
simulating the split on the manifest's class layout (:mod:`samsar.data.split_advice`).

Writes ``reports/validation.json`` (ok, tiles per split, problems) and ``reports/validation.md``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from pandera.errors import SchemaErrors
from PIL import Image
from rich.console import Console
from rich.markup import escape

from samsar.config import Params
from samsar.data.labels import class_histogram
from samsar.data.preprocess import DATASET_NAME, MANIFEST_NAME, tile_hash
from samsar.data.schema import manifest_schema
from samsar.data.split_advice import split_advice
from samsar.data.splits import SPLITS, required_splits
from samsar.io import write_json, write_text
from samsar.progress import Progress

REPORT_JSON = Path("reports/validation.json")
REPORT_MD = Path("reports/validation.md")
_MAX_ROWS_LISTED = 5


@dataclass(frozen=True)
class Problem:
    """One failed check: which check, the file concerned and what is wrong."""

    check: str
    file: str
    message: str


@dataclass
class ValidationReport:
    """Outcome of :func:`validate`; ``ok`` is true when no problem was found."""

    n_tiles: dict[str, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, check: str, file: Path | str, message: str) -> None:
        self.problems.append(Problem(check, str(file), message))

    def to_dict(self) -> dict:
        return {"ok": self.ok, "n_tiles": self.n_tiles, "problems": [asdict(p) for p in self.problems]}


def validate(params: Params) -> ValidationReport:
    """Run every check on ``processed_dir``, write the reports, print each problem; return the report."""
    report = ValidationReport()
    processed = params.processed_dir
    manifest = _load_manifest(processed, report)
    _check_dataset_json(processed, params, report)
    if manifest is not None:
        report.n_tiles = {s: int((manifest.get("split", pd.Series(dtype=str)) == s).sum()) for s in SPLITS}
        schema_ok = _check_schema(manifest, processed / MANIFEST_NAME, params, report)
        if schema_ok:
            _check_tiles(manifest, processed, params, report)
            _check_splits(manifest, processed / MANIFEST_NAME, params, report)
    write_json(params.path(REPORT_JSON), report.to_dict())
    write_text(params.path(REPORT_MD), render_markdown(report, processed))
    _print(report, params)
    return report


def _load_manifest(processed: Path, report: ValidationReport) -> pd.DataFrame | None:
    path = processed / MANIFEST_NAME
    if not path.is_file():
        report.add("manifest_exists", path, "manifest not found; run `samsar preprocess` first")
        return None
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for unreadable files
        report.add("manifest_readable", path, f"cannot read the manifest ({exc}); run `samsar preprocess` again")
        return None


def _check_dataset_json(processed: Path, params: Params, report: ValidationReport) -> None:
    path = processed / DATASET_NAME
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        report.add("dataset_json", path, f"missing or unreadable ({exc}); run `samsar preprocess` again")
        return
    names = [c.get("name") for c in doc.get("classes", [])]
    if names != params.data.class_names:
        report.add(
            "dataset_json",
            path,
            f"classes {names} differ from params data.classes {params.data.class_names}; run `samsar preprocess` again",
        )
    if doc.get("tile_size") != params.preprocess.tile_size:
        report.add(
            "dataset_json",
            path,
            f"tile_size {doc.get('tile_size')} differs from params {params.preprocess.tile_size}; run `samsar preprocess` again",
        )
    if not doc.get("scaling", {}).get("low"):
        report.add("dataset_json", path, "no fitted scaling statistics; run `samsar preprocess` again")


def _check_schema(manifest: pd.DataFrame, path: Path, params: Params, report: ValidationReport) -> bool:
    """Schema checks; returns whether the columns the file checks need are usable."""
    schema = manifest_schema(params.data.class_names, params.preprocess.tile_size)
    try:
        schema.validate(manifest, lazy=True)
        return True
    except SchemaErrors as exc:
        cases = exc.failure_cases.copy()
        # Frame-wide checks list every column of a failing row; report them once per row.
        frame_wide = cases["schema_context"] == "DataFrameSchema"
        cases.loc[frame_wide, "column"] = "(table)"
        cases = cases.drop_duplicates(["column", "check", "index"])
        for (column, check), group in cases.groupby(["column", "check"], dropna=False, sort=False):
            rows = [_row_name(manifest, i) for i in group["index"].head(_MAX_ROWS_LISTED)]
            where = f" at {', '.join(rows)}" if any(rows) else ""
            more = f" (and {len(group) - _MAX_ROWS_LISTED} more)" if len(group) > _MAX_ROWS_LISTED else ""
            listed = group["failure_case"].head(_MAX_ROWS_LISTED).tolist()
            values = "" if column == "(table)" and any(rows) else f"; values {listed}"
            report.add(f"schema:{check}", path, f"column {column}: {len(group)} failure(s){where}{values}{more}")
        needed = {
            "tile_id",
            "split",
            "image_path",
            "label_path",
            "sha256",
            *(f"count_{n}" for n in params.data.class_names),
            "count_ignore",
        }
        return needed <= set(manifest.columns) and not manifest[list(needed)].isna().any().any()


def _row_name(manifest: pd.DataFrame, index) -> str:
    if index is None or pd.isna(index) or "tile_id" not in manifest.columns:
        return ""
    return f"row {int(index)} ({manifest['tile_id'].iloc[int(index)]})"


def _check_tiles(manifest: pd.DataFrame, processed: Path, params: Params, report: ValidationReport) -> None:
    size, ignore = params.preprocess.tile_size, params.data.ignore_index
    num_classes = params.data.num_classes
    recorded_counts = manifest[[f"count_{n}" for n in [*params.data.class_names, "ignore"]]].to_numpy()
    rows = manifest[["image_path", "label_path", "sha256"]].itertuples(index=False)
    checking = Progress(len(manifest), "checking tiles", unit="tile")
    for (image_path, label_path, sha256), recorded in checking.iterate(zip(rows, recorded_counts)):
        image = _check_image_file(processed / image_path, size, report)
        label = _check_label_file(processed / label_path, size, num_classes, ignore, report)
        if label is None:
            continue
        counts = class_histogram(label, num_classes)
        if not np.array_equal(counts, recorded):
            report.add(
                "label_counts",
                processed / label_path,
                f"pixel counts {counts.tolist()} differ from the manifest's {recorded.tolist()}",
            )
        if image is not None and tile_hash(image, label) != sha256:
            report.add(
                "tile_hash",
                processed / image_path,
                "content hash differs from the manifest; the tile changed after preprocessing",
            )


def _check_image_file(path: Path, size: int, report: ValidationReport) -> np.ndarray | None:
    try:
        image = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as exc:
        report.add("image_readable", path, f"cannot read the tile image ({exc})")
        return None
    if image.shape != (3, size, size) or image.dtype != np.float32:
        report.add("image_shape", path, f"image is {image.dtype} {image.shape}, expected float32 (3, {size}, {size})")
        return None
    image = np.asarray(image)
    if not np.isfinite(image).all():
        report.add("image_finite", path, f"{int((~np.isfinite(image)).sum())} NaN/Inf value(s)")
    elif image.min() < 0 or image.max() > 1:
        report.add("image_range", path, f"values span [{image.min():.3g}, {image.max():.3g}], expected [0, 1]")
    return image


def _check_label_file(
    path: Path, size: int, num_classes: int, ignore: int, report: ValidationReport
) -> np.ndarray | None:
    try:
        with Image.open(path) as img:
            label = np.asarray(img)
    except (OSError, ValueError) as exc:
        report.add("label_readable", path, f"cannot read the tile label ({exc})")
        return None
    if label.shape != (size, size) or label.dtype != np.uint8:
        report.add("label_shape", path, f"label is {label.dtype} {label.shape}, expected uint8 ({size}, {size})")
        return None
    bad = (label >= num_classes) & (label != ignore)
    if bad.any():
        values, counts = np.unique(label[bad], return_counts=True)
        listed = ", ".join(f"{v} ({n} px)" for v, n in zip(values.tolist(), counts.tolist()))
        report.add("label_values", path, f"values outside classes 0..{num_classes - 1} and ignore {ignore}: {listed}")
    return label


def _check_splits(manifest: pd.DataFrame, path: Path, params: Params, report: ValidationReport) -> None:
    names = params.data.class_names
    present = {s: {n for n in names if manifest.loc[manifest["split"] == s, f"count_{n}"].sum() > 0} for s in SPLITS}
    missing = sorted(present["test"] - present["train"], key=names.index)
    empty = [s for s in required_splits(params.preprocess.split) if not (manifest["split"] == s).any()]
    # What would work instead, simulated on the class layout (once, for every problem below).
    advice = split_advice(manifest, params, missing) if missing or empty else ""
    for split in empty:
        report.add("split_non_empty", path, f"split '{split}' has no tiles; {advice}")
    by_hash = manifest.groupby("sha256")
    for digest, group in by_hash:
        if group["split"].nunique() > 1:
            tiles = ", ".join(f"{t} ({s})" for t, s in zip(group["tile_id"], group["split"]))
            report.add(
                "duplicate_across_splits", path, f"identical tile content {digest[:12]} in several splits: {tiles}"
            )
    for name in missing:
        report.add("class_in_train", path, f"class '{name}' occurs in the test split but not in train; {advice}")


def render_markdown(report: ValidationReport, processed: Path) -> str:
    """Readable summary of a validation report."""
    lines = [
        "# Data validation",
        "",
        f"Dataset: `{processed}`",
        "",
        f"**Status: {'passed' if report.ok else f'FAILED ({len(report.problems)} problem(s))'}**",
        "",
        "| split | tiles |",
        "|---|---|",
        *[f"| {s} | {report.n_tiles.get(s, 0)} |" for s in SPLITS],
        "",
    ]
    if report.problems:
        lines += ["## Problems", "", "| check | file | message |", "|---|---|---|"]
        lines += [f"| {p.check} | `{p.file}` | {p.message.replace('|', '/')} |" for p in report.problems]
        lines.append("")
    return "\n".join(lines)


def _print(report: ValidationReport, params: Params) -> None:
    console = Console(stderr=True, soft_wrap=True)
    for p in report.problems:
        console.print(f"[red]{escape(p.check)}[/red] {escape(p.file)}: {escape(p.message)}")
    tiles = ", ".join(f"{s} {n}" for s, n in report.n_tiles.items())
    status = "[green]passed[/green]" if report.ok else f"[red]FAILED with {len(report.problems)} problem(s)[/red]"
    console.print(f"validate: {status} ({tiles}); report in {escape(str(params.path(REPORT_JSON)))}")
