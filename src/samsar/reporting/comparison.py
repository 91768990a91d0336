"""One table across variants: size, cost, test scores as mean ± std over seeds, and paired intervals.

Quality is never ranked by the mean alone: a variant is called better than another only when the
95 % paired-bootstrap interval of their mIoU difference (test tiles and seeds resampled, see
:mod:`samsar.uncertainty`) excludes 0. For a task whose non-background classes are all object
classes (``evaluate.object_classes``, e.g. ships), the table leads with each object class's object
F1 and pixel IoU; land-cover tasks get a mean boundary F1 (``mBF1``) column.

Box-prompt variants (``<method>-box``) are evaluated with box prompts from the test truth, so they
are compared like with like: they get their own table, rows marked ``§``, with intervals and
verdicts only against the box-head baseline (``decoder_only-box``); the classwise variants keep
theirs against ``decoder_only``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from samsar.config import Params, variant_head
from samsar.evaluation.metrics import ABSENT, ABSENT_NOTE, absent_classes
from samsar.evaluation.metrics import format_metric as fmt
from samsar.evaluation.objects import SIZE_BUCKETS_DESCRIPTION
from samsar.evaluation.runner import tiles_path
from samsar.io import write_text
from samsar.reporting.card import human_bytes
from samsar.uncertainty import Interval, TileConfusions, paired_bootstrap

REFERENCE = "decoder_only"  # the papers' baseline every difference is taken against
BOX_HEAD = "box_prompt"
BOX_MARK = "§"
BOX_LABEL = "prompted with ground-truth boxes: not comparable with the classwise head"
HOW_TO_READ = (
    "Scores are the mean ± standard deviation over the training seeds, so the ± shows how much a "
    "score moves when only the seed changes. The interval is a 95 % paired bootstrap of the mIoU "
    "difference, resampling the test tiles (the same tiles for both models) and each model's seeds; "
    "a variant is called better or worse only when that interval excludes 0, otherwise the "
    "difference is within noise."
)


@dataclass(frozen=True)
class Column:
    """A comparison column: metrics key, header, and whether its extreme is marked.

    Only deterministic cost columns are marked best (fewest, smallest): quality is judged by intervals.
    """

    key: str
    header: str
    mark_lowest: bool = False
    std_key: str | None = None  # where the seed std is (default ``<key>_std``)

    def format(self, metrics: dict) -> str:
        value = _get(metrics, self.key)
        if value is None:
            return "n/a"
        if self.key == "n_trainable_params":
            return f"{int(value):,}"
        if self.key == "artifact_bytes":
            return human_bytes(int(value))
        if self.key == "train_seconds":
            return f"{value:.0f} s"
        std = _get(metrics, self.std_key or self.key + "_std")
        return fmt(value) if std is None else f"{fmt(value)} ± {fmt(std)}"


COLUMNS = (
    Column("n_trainable_params", "trainable params", mark_lowest=True),
    Column("artifact_bytes", "artifact size", mark_lowest=True),
    Column("val_mIoU", "val mIoU"),
    Column("mIoU", "test mIoU"),
    Column("mF1", "mF1"),
    Column("mF1_reference", "mF1 (reference)"),
    Column("OA", "OA"),
    Column("kappa", "kappa"),
    Column("ignore_background.mIoU", "mIoU ignore-bg"),
    Column("train_seconds", "training time (sum over seeds)"),
)
COST_KEYS = ("n_trainable_params", "artifact_bytes", "train_seconds", "val_mIoU")
MBF1_COLUMN = Column("mBF1", "mBF1")


def object_columns(name: str) -> tuple[Column, Column]:
    """Object F1 and pixel IoU of object class ``name`` (mean ± std over seeds)."""
    return (Column(f"object_f1.{name}", f"{name} object F1", std_key=f"object_f1_std.{name}"),
            Column(f"per_class_iou.{name}", f"{name} IoU", std_key=f"per_class_iou_std.{name}"))


def columns_for(class_names: list[str], background: str | None, object_classes: list[str]) -> tuple[Column, ...]:
    """The comparison's columns for a task. When every non-background class is an object class, the
    table leads with object F1 and pixel IoU per object class; other object classes add their
    object F1 and IoU after the standard columns, and land-cover classes a ``mBF1`` column."""
    foreground = [n for n in class_names if n != background]
    objects = [n for n in foreground if n in object_classes]
    extra = tuple(col for name in objects for col in object_columns(name))
    if objects and len(objects) == len(foreground):
        return extra + COLUMNS
    return COLUMNS[:-1] + extra + ((MBF1_COLUMN,) if len(objects) < len(foreground) else ()) + COLUMNS[-1:]


def _get(metrics: dict, key: str):
    value = metrics
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


DEGENERATE_MARK = "‡"


def degenerate_columns(rows: dict[str, dict], n_foreground: int | None = None,
                       columns: tuple[Column, ...] = COLUMNS) -> dict[str, str]:
    """Columns on which marking a best value would mislead, ``key -> why``: never marked, flagged
    ``‡`` in the header and explained in a note under the table.

    - an ignore-background form when the task has fewer than 2 non-background classes: dropping
      the background-truth pixels drops every false positive, so the score is the one class's
      recall (the lenient form, which also drops background predictions, is 1 or undefined); it
      would crown the variant that over-predicts the object;
    - a marked (cost) column undefined or equal for every variant: there is no best to mark.
    """
    reasons: dict[str, str] = {}
    for col in columns:
        if col.key.startswith("ignore_background") and n_foreground is not None and n_foreground < 2:
            reasons[col.key] = (
                f"with {n_foreground} non-background class, dropping background-truth pixels drops every false "
                "positive, so this is that class's recall and favours over-prediction; it cannot rank the variants")
        elif col.mark_lowest:
            values = [_get(m, col.key) for m in rows.values()]
            defined = [v for v in values if v is not None and v == v]
            if not defined:
                reasons[col.key] = "undefined for every variant"
            elif len(rows) > 1 and len(defined) == len(values) and len(set(defined)) == 1:
                reasons[col.key] = "equal for every variant"
    return reasons


def degenerate_note(reasons: dict[str, str], columns: tuple[Column, ...] = COLUMNS) -> str:
    """One line per degenerate column saying why none of its values is marked best."""
    headers = {c.key: c.header for c in columns}
    lines = [f"{DEGENERATE_MARK} `{headers[key]}`: {why}; no value is marked best." for key, why in reasons.items()]
    return "\n".join(lines) + "\n" if lines else ""


def comparison_table(rows: dict[str, dict], majority: dict | None, intervals: dict[str, Interval] | None = None,
                     reference: str = REFERENCE, n_foreground: int | None = None,
                     columns: tuple[Column, ...] = COLUMNS, boxed: frozenset[str] = frozenset()) -> str:
    """Markdown table of ``variant -> metrics`` with, per variant, its interval against ``reference``.

    ``majority``: scores of the majority-class predictor, shown as a last row. A variant marked
    ``†`` had a seed stopped by the wall-time guard (not comparable). ``n_foreground``: the number
    of non-background classes (None: no background class); columns :func:`degenerate_columns`
    finds are never marked and their header carries ``‡``. ``columns``: see :func:`columns_for`.
    ``boxed``: box-prompt variants, marked ``§`` (see :data:`BOX_LABEL`).
    """
    intervals = intervals or {}
    degenerate = degenerate_columns(rows, n_foreground, columns)
    lowest = {}
    for col in columns:
        values = [v for v in (_get(m, col.key) for m in rows.values()) if v is not None]
        if col.mark_lowest and values and col.key not in degenerate:
            lowest[col.key] = min(values)
    headers = [f"{c.header} {DEGENERATE_MARK}" if c.key in degenerate else c.header for c in columns]
    headers += ["seeds: test mIoU", f"Δ mIoU vs {reference} [95 % interval]", "verdict"]
    lines = ["| variant | " + " | ".join(headers) + " |", "|---|" + "---:|" * (len(headers) - 1) + "---|"]
    for variant, metrics in rows.items():
        cells = []
        for col in columns:
            text = col.format(metrics)
            cells.append(f"**{text}**" if col.key in lowest and _get(metrics, col.key) == lowest[col.key] else text)
        cells.append(" / ".join(fmt(v) for v in metrics.get("seed_mIoU", [])) or "n/a")
        interval = intervals.get(variant)
        if variant == reference:
            cells += ["reference", "-"]
        elif interval is None:
            cells += ["n/a", "n/a"]
        else:
            cells += [str(interval), interval.verdict]
        lines.append(f"| {row_name(variant, metrics, boxed)} | " + " | ".join(cells) + " |")
    if majority is not None:
        cells = ["-" if col.key in COST_KEYS else col.format(majority) for col in columns] + ["-", "-", "-"]
        lines.append(f"| majority class ({majority.get('class', '?')}) | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def row_name(variant: str, metrics: dict, boxed: frozenset[str] = frozenset()) -> str:
    """The variant as a table row names it: ``§`` for a box-prompt variant, ``†`` when cut short."""
    return variant + (f" {BOX_MARK}" if variant in boxed else "") + (" †" if metrics.get("cut_short") else "")


def per_class_table(rows: dict[str, dict], class_names: list[str], boxed: frozenset[str] = frozenset()) -> str:
    """Markdown matrix of mean test IoU per variant (rows) and class (columns); ``absent`` where the
    class has no test pixels and none was predicted (``null`` in the metrics file)."""
    lines = ["| variant | " + " | ".join(class_names) + " |", "|---|" + "---:|" * len(class_names)]
    for variant, metrics in rows.items():
        per_class = metrics.get("per_class_iou") or {}
        absent = absent_classes(per_class)
        cells = [ABSENT if name in absent else fmt(per_class.get(name)) for name in class_names]
        lines.append(f"| {row_name(variant, {}, boxed)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _by_size(counts: dict | None) -> str:
    """``small / medium / large`` object counts (means over seeds)."""
    if not counts:
        return "n/a"
    return " / ".join(f"{round(counts.get(name, 0), 1):g}" for name in ("small", "medium", "large"))


def object_table(rows: dict[str, dict], object_classes: list[str], boxed: frozenset[str] = frozenset()) -> str:
    """Markdown table of per-object scores: one row per variant and object class (means over seeds)."""
    lines = ["| variant | class | object precision | object recall | object F1 | mean matched IoU | "
             "true objects | missed (small / medium / large) | false (small / medium / large) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for variant, metrics in rows.items():
        for name in object_classes:
            counts = (metrics.get("objects") or {}).get(name) or {}
            cells = [Column(f"{key}.{name}", key, std_key=f"{key}_std.{name}").format(metrics)
                     for key in ("object_precision", "object_recall", "object_f1", "object_mean_iou")]
            true = counts.get("n_true_objects")
            cells += ["n/a" if true is None else f"{true:g}", _by_size(counts.get("missed_by_size")),
                      _by_size(counts.get("false_by_size"))]
            lines.append(f"| {row_name(variant, {}, boxed)} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def boundary_table(rows: dict[str, dict], classes: list[str], boxed: frozenset[str] = frozenset()) -> str:
    """Markdown matrix of mean boundary F1 per variant (rows) and land-cover class (columns), with mBF1."""
    lines = ["| variant | " + " | ".join(classes) + " | mBF1 |", "|---|" + "---:|" * (len(classes) + 1)]
    for variant, metrics in rows.items():
        cells = [Column(f"boundary_f1.{n}", n, std_key=f"boundary_f1_std.{n}").format(metrics) for n in classes]
        lines.append(f"| {row_name(variant, {}, boxed)} | " + " | ".join(cells + [MBF1_COLUMN.format(metrics)]) + " |")
    return "\n".join(lines) + "\n"


def pairwise_table(names: list[str], pairs: dict[tuple[str, str], Interval]) -> str:
    """Markdown matrix: row minus column mIoU difference and its interval; ▲/▼ only when it excludes 0."""
    marks = {"better": "▲", "worse": "▼", "within noise": "≈"}
    lines = ["| row − column | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for a in names:
        cells = []
        for b in names:
            interval = pairs.get((a, b))
            cells.append("-" if interval is None else f"{marks[interval.verdict]} {interval}")
        lines.append(f"| {a} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def verdict_line(names: list[str], rows: dict[str, dict], pairs: dict[tuple[str, str], Interval]) -> str:
    """Which variant, if any, is better than every other beyond the noise."""
    top = max(names, key=lambda n: rows[n]["mIoU"])
    ties = [b for b in names if b != top and pairs[(top, b)].verdict != "better"]
    if not ties:
        return f"**{top}** has the highest mean test mIoU and its interval against every other variant excludes 0."
    return (f"No variant is better than all others beyond the noise: {top} has the highest mean test mIoU, "
            f"but its difference to {', '.join(ties)} is within noise (interval includes 0).")


def box_reference(params: Params) -> str:
    """The box-head baseline: SAM's decoder alone prompted with boxes (``decoder_only`` when plain
    names already use the box_prompt head, else ``decoder_only-box``)."""
    return REFERENCE if params.variant_options.head == BOX_HEAD else f"{REFERENCE}-box"


def write_comparison(params: Params) -> Path:
    """Write ``reports/comparison.md`` over ``params.variants`` (variants not evaluated are listed)."""
    rows, tiles, missing, majority = {}, {}, [], None
    for variant in params.variants:
        path = params.metrics_path(variant)
        if not path.is_file():
            missing.append(variant)
            continue
        rows[variant] = json.loads(path.read_text())
        seeds_file = path.with_suffix(".seeds.json")
        if seeds_file.is_file():
            rows[variant]["seed_mIoU"] = [s["mIoU"] for s in json.loads(seeds_file.read_text())["seeds"]]
        if tiles_path(params, variant).is_file():
            tiles[variant] = TileConfusions.load(tiles_path(params, variant))
        if majority is None and "majority" in rows[variant]:
            majority = {**rows[variant]["majority"], "class": rows[variant].get("majority_class")}
    if not rows:
        raise FileNotFoundError(f"no metrics/<variant>.json for any of {params.variants}; run `samsar evaluate` first")
    boxed = frozenset(v for v in rows if variant_head(v, params.variant_options) == BOX_HEAD)
    groups = [group for group in ([v for v in rows if v not in boxed], [v for v in rows if v in boxed]) if group]
    pairs, references = {}, {}
    for group in groups:  # like with like: no interval between the heads
        names = [v for v in group if v in tiles]
        pairs.update({(a, b): paired_bootstrap(tiles[a], tiles[b]) for a in names for b in names if a != b})
        references[group[0]] = box_reference(params) if group[0] in boxed else (
            REFERENCE if REFERENCE in names else (names[0] if names else REFERENCE))
    intervals = {a: interval for (a, b), interval in pairs.items() if b in references.values()}
    first = next(iter(rows.values()))
    classes, background = params.data.class_names, params.data.background
    n_foreground = len(classes) - 1 if background in classes else None
    object_classes = list(params.evaluate.object_classes)
    land_cover = [n for n in classes if n != background and n not in object_classes]
    columns = columns_for(classes, background, object_classes)
    leads = object_classes if object_classes and not land_cover else []
    text = [
        f"# Variant comparison ({params.data.name})\n",
        f"Test split ({first.get('n_test_tiles', '?')} tiles), seeds {first.get('seeds', '?')}, all-classes form unless "
        "marked. `val mIoU` (mean best validation mIoU) is what selects; test scores only report. "
        "`mIoU ignore-bg` is the standard form that drops pixels whose truth is background. "
        "`mF1` counts a class with no true positive as 0; `mF1 (reference)` is the CWSAM reference's "
        "convention, which leaves such a class out of the mean. "
        "Bold marks only the cheapest cost columns.\n",
        HOW_TO_READ + "\n",
    ]
    if leads:
        text.append(f"Every non-background class is an object class, so the table leads with the object F1 (connected "
                    f"components matched at IoU >= {params.evaluate.object_iou:g}) and pixel IoU of "
                    f"{', '.join(leads)}; the intervals and verdicts remain on mIoU.\n")
    for group in groups:
        reference = references[group[0]]
        group_rows = {v: rows[v] for v in group}
        if len(groups) > 1:
            text.append("### Box-prompt head\n" if group[0] in boxed else "### Classwise head\n")
        if group[0] in boxed:
            missing_reference = "" if reference in tiles else (
                f", which was not evaluated: no verdicts (add `{reference}` to variants for them)")
            text.append(f"{BOX_MARK} {BOX_LABEL}. Test tiles are prompted with exact boxes of the true objects, so "
                        f"these rows are compared only with each other: intervals and verdicts against "
                        f"`{reference}`{missing_reference}.\n")
        text.append(comparison_table(group_rows, majority, intervals, reference, n_foreground, columns, boxed))
        note = degenerate_note(degenerate_columns(group_rows, n_foreground, columns), columns)
        if note:
            text.append(note)
    if any(m.get("cut_short") for m in rows.values()):
        text.append("† A seed of this variant was stopped by the `train.max_seconds` guard before its step budget: "
                    "its scores are not comparable and it is never promoted.\n")
    if any(m.get("per_class_iou") for m in rows.values()):
        text += ["## Per-class test IoU\n", "Mean over seeds" + (f"; {BOX_MARK} {BOX_LABEL}" if boxed else "") + ".\n",
                 per_class_table(rows, params.data.class_names, boxed)]
        if any(absent_classes(m.get("per_class_iou") or {}) for m in rows.values()):
            text.append(ABSENT_NOTE + ".\n")
    if object_classes and any(m.get("object_f1") for m in rows.values()):
        text += ["## Objects\n",
                 f"Connected components (8-connected) of truth and prediction matched one-to-one per test tile at IoU >= "
                 f"{params.evaluate.object_iou:g}; mean ± std over seeds. Missed and false objects by size: "
                 + ", ".join(f"{k} {v}" for k, v in SIZE_BUCKETS_DESCRIPTION.items()) + " (means over seeds)"
                 + (f"; {BOX_MARK} {BOX_LABEL}" if boxed else "") + ".\n",
                 object_table(rows, object_classes, boxed)]
    if land_cover and any(m.get("boundary_f1") for m in rows.values()):
        text += ["## Boundary F1\n",
                 f"Boundary pixels of each land-cover class matched within {params.evaluate.boundary_tolerance} px "
                 "between truth and prediction; mean ± std over seeds" + (f"; {BOX_MARK} {BOX_LABEL}" if boxed else "")
                 + ".\n",
                 boundary_table(rows, land_cover, boxed)]
    compared = [names for names in ([v for v in group if v in tiles] for group in groups) if len(names) > 1]
    if compared:
        text += ["## Pairwise test mIoU differences\n",
                 "Row minus column, 95 % paired-bootstrap interval; ▲ better, ▼ worse, ≈ within noise"
                 + (" (each head only against itself)" if len(groups) > 1 else "") + ".\n"]
        for names in compared:
            text += [pairwise_table(names, pairs), verdict_line(names, rows, pairs) + "\n"]
    if missing:
        text.append(f"\nNot evaluated yet: {', '.join(missing)}.\n")
    out = params.path("reports/comparison.md")
    write_text(out, "\n".join(text))
    return out
