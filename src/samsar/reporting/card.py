"""Model cards (Mitchell et al. 2019): Markdown from a jinja2 template and a self-contained HTML render."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import re
from pathlib import Path

import jinja2
import markdown

from samsar.config import Params
from samsar.evaluation.metrics import ABSENT, ABSENT_NOTE, MF1_REFERENCE_DESCRIPTION, absent_classes
from samsar.evaluation.metrics import format_metric as fmt
from samsar.evaluation.objects import SIZE_BUCKETS_DESCRIPTION
from samsar.evaluation.runner import (
    CONFUSION_COUNTS,
    CONFUSION_NORMALIZED,
    FIGURES,
    OVERLAYS,
    TRAINING_CURVES,
    adapter_dir,
    directory_bytes,
    figures_dir,
    read_train_summary,
)
from samsar.io import write_text
from samsar.tracking.provenance import project_relative

TEMPLATES = Path(__file__).parent / "templates"
CARD_MD = "model_card.md"
CARD_HTML = "model_card.html"


def human_bytes(n: int) -> str:
    """``1536`` -> ``"1.5 KiB"``."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def read_metrics(params: Params, variant: str) -> dict:
    """``metrics/<variant>.json``; names the fix when it is missing."""
    path = params.metrics_path(variant)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; run `samsar evaluate --variant {variant}` first")
    return json.loads(path.read_text())


def method_description(method: str) -> str:
    """First paragraph of the method class's docstring (so new methods need no card edits)."""
    from samsar.models.variants import VARIANTS

    doc = (VARIANTS[method].__doc__ or "").strip() if method in VARIANTS else ""
    paragraph = " ".join(line.strip() for line in doc.split("\n\n")[0].splitlines())
    return paragraph.replace("``", "`") or f"method '{method}'"


def head_description(options: dict) -> str:
    """The card's architecture wording for the head recorded in the adapter's ``variant_options``."""
    if options.get("head") != "box_prompt":
        return "a classwise head (one logit map per class, no prompts)"
    box = options.get("box_prompt") or {}
    boxes = "one box around all objects of a tile" if box.get("boxes") == "per_image" else "one box per object"
    return (f"the box_prompt head: SAM's own decoder prompted with boxes, predicting background / object inside "
            f"them ({boxes}, taken from the truth in training, grown by 0-{box.get('jitter', '?')} px per side). "
            f"It needs box prompts at prediction (`samsar predict --boxes`); test scores use exact ground-truth "
            f"boxes, so they are not comparable with a classwise model's")


def _base(params: Params, adapter: dict) -> dict:
    """How to describe the base model the adapter was trained on."""
    from samsar.training.pretrain import summary_path

    if adapter["base_id"].startswith("random-init"):
        return {"kind": "random", "path": "none",
                "description": f"none — SAM `{adapter['backbone']}` with random weights (seed {adapter['seed']})."}
    path = Path(adapter.get("base_checkpoint") or "")
    if params.model.checkpoint is None and path == params.path(params.pretrain.output):
        pretrain = summary_path(path)
        detail = ""
        if pretrain.is_file():
            doc = json.loads(pretrain.read_text())
            detail = (f" ({doc['steps']} steps, {doc['seconds']:.0f} s on synthetic source-domain scenes with classes "
                      f"{', '.join(doc['source_classes'])}; source holdout mIoU {fmt(doc['source_holdout_mIoU'])})"
                      + ("; CUT SHORT by `pretrain.max_seconds` before its step budget" if doc.get("cut_short") else ""))
        return {"kind": "stand-in", "path": project_relative(params, path),
                "description": f"stand-in foundation model: the tiny SAM trained from scratch by `samsar pretrain`{detail}."}
    return {"kind": "checkpoint", "path": project_relative(params, path), "description": f"SAM checkpoint `{path.name}`."}


def _acquisition(params: Params, info) -> dict:
    """The acquisition table: params.yaml `card` values, else what the data source implies."""
    synthetic = info.source == "synthetic"
    card = params.card

    def value(given, simulated: str) -> str:
        if given is not None:
            return str(given)
        return simulated if synthetic else "not recorded (set it under `card` in params.yaml)"

    scaler = info.scaler
    kind = scaler.input_kind
    if synthetic:
        kind = f"{params.data.synthetic.looks:g}-look {kind}"
    channels = f"{scaler.channels} channel{'s' if scaler.channels != 1 else ''}"
    return {
        "source": "synthetic scenes from the samsar SAR simulator (not real acquisitions)" if synthetic else info.source,
        "sensor": value(card.sensor, "none — simulated"),
        "band": value(card.band, "none — simulated"),
        "polarisation": value(card.polarisation, "none — simulated, single channel"),
        "resolution": value(None if card.resolution_m is None else f"{card.resolution_m:g} m", "none — simulated pixels"),
        "input": f"raw {kind}, {channels}",
    }


def _dataset(params: Params, info, train_counts) -> dict:
    from samsar.training.losses import class_weights_from_counts

    manifest = params.processed_dir / "manifest.parquet"
    doc = json.loads((params.processed_dir / "dataset.json").read_text())
    weights = class_weights_from_counts(train_counts, params.train.class_weights).tolist()
    total = max(int(train_counts.sum()), 1)
    scaler = info.scaler
    scaling = (f"{scaler.input_kind}{' -> dB' if scaler.to_db else ''}, clipped at the "
               f"{scaler.percentiles[0]:g}-{scaler.percentiles[1]:g} percentiles of the training split, scaled to [0, 1]")
    return {
        "name": params.data.name,
        "tile_size": info.tile_size,
        "n_tiles": doc.get("n_tiles", {}),
        "manifest": str(manifest.relative_to(params.root)) if manifest.is_relative_to(params.root) else str(manifest),
        "manifest_sha256": hashlib.sha256(manifest.read_bytes()).hexdigest(),
        "scaling": scaling,
        "class_distribution": [
            {"name": n, "pixels": int(c), "share": int(c) / total, "weight": w}
            for n, c, w in zip(info.class_names, train_counts, weights)
        ],
    }


def _caveats(base: dict, metrics: dict, summary: dict, synthetic: bool) -> list[str]:
    caveats = []
    if base["kind"] == "random":
        caveats.append("The encoder is randomly initialised (no pretrained SAM here): methods that freeze it adapt "
                       "random features, so this model says little about how the method behaves on real SAM.")
    elif base["kind"] == "stand-in":
        caveats.append("The base is a small stand-in trained on synthetic source-domain data, not Meta's SAM: "
                       "compare methods relative to each other; for real conclusions set `model.checkpoint` to an "
                       "official checkpoint and train on GPU workers.")
    if synthetic:
        caveats.append("Trained and tested on synthetic SAR scenes: the scores do not transfer to real sensors.")
    scored = {n: v for n, v in metrics["per_class_iou"].items() if v is not None}
    if scored:
        weakest = min(scored, key=scored.get)
        caveats.append(f"Weakest class: {weakest} (test IoU {fmt(scored[weakest])}); expect most errors there.")
    absent = absent_classes(metrics["per_class_iou"])
    if absent:
        caveats.append(f"Not tested on {', '.join(absent)}: the test split has no pixel of it (and none was predicted), "
                       "so the scores say nothing about how the model recognises it.")
    if metrics["n_test_tiles"] < 50:
        caveats.append(f"The test split holds only {metrics['n_test_tiles']} tiles: differences of a few points "
                       "between variants are within noise.")
    if "ignore_background_lenient" in metrics:
        caveats.append("The CWSAM reference's lenient ignore-background form drops every pixel *predicted* as "
                       "background, which flatters models that over-predict it; quote the standard form.")
    if summary.get("cut_short"):
        cut = [str(r["seed"]) for r in summary["runs"] if r["cut_short"]]
        caveats.append(f"CUT SHORT: the wall-time guard (`train.max_seconds`) stopped seed(s) {', '.join(cut)} before "
                       "the step budget; these scores depend on machine load, are not comparable and are never promoted.")
    return caveats


def _forms(metrics: dict) -> list[dict]:
    forms = [{"label": "all classes", "m": metrics, "note": ""}]
    for key, label in (("ignore_background", "ignore background (standard)"),
                       ("ignore_background_lenient", "ignore background (CWSAM reference, lenient)")):
        if key in metrics:
            forms.append({"label": label, "m": metrics[key], "note": metrics[key].get("description", "")})
    return forms


def _objects(metrics: dict, class_names: list[str]) -> list[dict]:
    """Rows of the card's object table (one per object class; empty for metrics without them)."""
    rows = []
    found = metrics.get("objects") or {}
    for name, counts in ((n, found[n]) for n in class_names if n in found):
        row = {"name": name, "true": counts.get("n_true_objects"), "missed": counts.get("missed_by_size") or {},
               "false": counts.get("false_by_size") or {}, "interval": (metrics.get("object_f1_interval") or {}).get(name)}
        for key in ("object_precision", "object_recall", "object_f1", "object_mean_iou"):
            row[key] = (metrics.get(key) or {}).get(name)
            row[key + "_std"] = (metrics.get(key + "_std") or {}).get(name)
        rows.append(row)
    return rows


def _boundaries(metrics: dict, class_names: list[str]) -> list[dict]:
    """Rows of the card's boundary table (one per land-cover class)."""
    f1 = metrics.get("boundary_f1") or {}
    return [{"name": name, "precision": (metrics.get("boundary_precision") or {}).get(name),
             "recall": (metrics.get("boundary_recall") or {}).get(name), "f1": f1[name],
             "f1_std": (metrics.get("boundary_f1_std") or {}).get(name)}
            for name in class_names if name in f1]


def render_markdown(params: Params, variant: str) -> str:
    """The model card of ``variant`` as Markdown (figures referenced relative to the card)."""
    from samsar.data.dataset import DatasetInfo, TileDataset
    from samsar.models.artifacts import read_adapter_config
    from samsar.tracking.provenance import git_sha
    from samsar.tracking.registry import model_name

    summary = read_train_summary(params, variant)
    metrics = read_metrics(params, variant)
    adapter_path = adapter_dir(params, variant)
    adapter = read_adapter_config(adapter_path)
    info = DatasetInfo.load(params.processed_dir)
    train_counts = TileDataset(params.processed_dir, "train").class_pixel_counts()
    base = _base(params, adapter)
    head = (adapter.get("variant_options") or {}).get("head", "classwise")
    names = {"history": TRAINING_CURVES, "confusion_counts": CONFUSION_COUNTS,
             "confusion_normalized": CONFUSION_NORMALIZED, "overlays": OVERLAYS}
    found = figures_dir(params, variant)
    figures = {key: f"{FIGURES}/{name}" if (found / name).is_file() else None for key, name in names.items()}
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True)
    env.globals.update(fmt=fmt, ABSENT=ABSENT, ABSENT_NOTE=ABSENT_NOTE, MF1_REFERENCE_DESCRIPTION=MF1_REFERENCE_DESCRIPTION)
    rel_adapter = adapter_path.relative_to(params.root) if adapter_path.is_relative_to(params.root) else adapter_path
    return env.get_template("model_card.md.j2").render(
        variant=variant,
        card_summary=card_summary(params, variant),
        generated=dt.date.today().isoformat(),
        classes=[{"name": n, "color": c} for n, c in zip(info.class_names, info.colors)],
        adapter=adapter,
        adapter_dir=rel_adapter,
        artifact_size=human_bytes(directory_bytes(adapter_path)),
        method_description=method_description(adapter["method"]),
        head_description=head_description(adapter.get("variant_options") or {}),
        box_head=head == "box_prompt",
        registered_model=model_name(params, head),
        method_options=json.dumps(adapter["variant_options"]),
        base=base,
        summary=summary,
        metrics=metrics,
        absent=absent_classes(metrics["per_class_iou"]),
        forms=_forms(metrics),
        objects=_objects(metrics, info.class_names),
        boundaries=_boundaries(metrics, info.class_names),
        size_buckets=SIZE_BUCKETS_DESCRIPTION,
        train=params.train,
        dataset=_dataset(params, info, train_counts),
        acquisition=_acquisition(params, info),
        figures=figures,
        caveats=_caveats(base, metrics, summary, info.source == "synthetic"),
        git_sha=git_sha(params.root),
        owners=params.card.owners,
    )


def render_html(markdown_text: str, figure_dir: Path, title: str) -> str:
    """Self-contained HTML: the Markdown rendered, every local PNG inlined as base64."""
    body = markdown.markdown(markdown_text, extensions=["tables", "fenced_code"])

    def inline(match: re.Match) -> str:
        path = figure_dir / match.group(1)
        if not path.is_file():
            return match.group(0)
        return f'src="data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}"'

    body = re.sub(r'src="([^":]+\.png)"', inline, body)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=False)
    return env.get_template("model_card.html.j2").render(title=title, body=body)


def card_summary(params: Params, variant: str) -> str:
    """The card's summary in a few lines (variant, its head, test metrics mean ± std with the mIoU
    interval, caveats, base checkpoint path and id); also the description of the variant's registered version."""
    from samsar.tracking.registry import version_description

    return version_description(params, variant, read_metrics(params, variant))


def write_card(params: Params, variant: str) -> Path:
    """Write ``reports/<variant>/model_card.md`` and ``.html``; add both to the training's MLflow run.

    Returns the Markdown path.
    """
    out_dir = params.report_dir(variant)
    text = render_markdown(params, variant)
    md_path, html_path = out_dir / CARD_MD, out_dir / CARD_HTML
    write_text(md_path, text)
    write_text(html_path, render_html(text, out_dir, f"Model card: {variant}"))
    run_id = read_train_summary(params, variant).get("mlflow_run_id")
    if params.tracking.enabled and run_id:
        from samsar.tracking.runs import resume_run

        with resume_run(params, run_id) as run:
            run.log_artifacts(md_path, "model_card")
            run.log_artifacts(html_path, "model_card")
    return md_path
