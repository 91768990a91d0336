"""One table across variants: size, cost and test scores, best per column in bold."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from samsar.config import Params
from samsar.io import write_text
from samsar.evaluation.metrics import format_metric as fmt
from samsar.reporting.card import human_bytes


@dataclass(frozen=True)
class Column:
    """A comparison column: metrics key, header, formatter and which direction is best."""

    key: str
    header: str
    higher_is_better: bool

    def format(self, value) -> str:
        if value is None:
            return "n/a"
        if self.key == "n_trainable_params":
            return f"{int(value):,}"
        if self.key == "artifact_bytes":
            return human_bytes(int(value))
        if self.key == "train_seconds":
            return f"{value:.0f} s"
        return fmt(value)


COLUMNS = (
    Column("n_trainable_params", "trainable params", higher_is_better=False),
    Column("artifact_bytes", "artifact size", higher_is_better=False),
    Column("mIoU", "mIoU", higher_is_better=True),
    Column("mF1", "mF1", higher_is_better=True),
    Column("OA", "OA", higher_is_better=True),
    Column("kappa", "kappa", higher_is_better=True),
    Column("ignore_background.mIoU", "mIoU ignore-bg", higher_is_better=True),
    Column("train_seconds", "training time", higher_is_better=False),
)


def _get(metrics: dict, key: str):
    value = metrics
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def comparison_table(rows: dict[str, dict], majority: dict | None) -> str:
    """Markdown table of ``variant -> metrics``; the best value of each column in bold.

    ``majority``: scores of the majority-class predictor, shown as a last row (not ranked).
    """
    best = {}
    for col in COLUMNS:
        values = [v for v in (_get(m, col.key) for m in rows.values()) if v is not None]
        if values:
            best[col.key] = max(values) if col.higher_is_better else min(values)
    lines = [
        "| variant | " + " | ".join(c.header for c in COLUMNS) + " |",
        "|---|" + "---:|" * len(COLUMNS),
    ]
    for variant, metrics in rows.items():
        cells = []
        for col in COLUMNS:
            value = _get(metrics, col.key)
            text = col.format(value)
            cells.append(f"**{text}**" if value is not None and value == best.get(col.key) else text)
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    if majority is not None:
        cells = ["-" if col.key in ("n_trainable_params", "artifact_bytes", "train_seconds") else col.format(_get(majority, col.key))
                 for col in COLUMNS]
        lines.append(f"| majority class ({majority.get('class', '?')}) | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_comparison(params: Params) -> Path:
    """Write ``reports/comparison.md`` over ``params.variants`` (variants not evaluated are listed)."""
    rows, missing, majority = {}, [], None
    for variant in params.variants:
        path = params.metrics_path(variant)
        if not path.is_file():
            missing.append(variant)
            continue
        rows[variant] = json.loads(path.read_text())
        if majority is None and "majority" in rows[variant]:
            majority = {**rows[variant]["majority"], "class": rows[variant].get("majority_class")}
    if not rows:
        raise FileNotFoundError(f"no metrics/<variant>.json for any of {params.variants}; run `samsar evaluate` first")
    first = next(iter(rows.values()))
    text = [
        f"# Variant comparison ({params.data.name})\n",
        f"Test split ({first.get('n_test_tiles', '?')} tiles), all-classes form unless marked; "
        "best value per column in **bold** (fewest parameters, smallest artifact and shortest training "
        "count as best). `mIoU ignore-bg` is the standard form that drops pixels whose truth is background.\n",
        comparison_table(rows, majority),
    ]
    if missing:
        text.append(f"\nNot evaluated yet: {', '.join(missing)}.\n")
    out = params.path("reports/comparison.md")
    write_text(out, "\n".join(text))
    return out
