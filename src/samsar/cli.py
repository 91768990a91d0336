"""The ``samsar`` command: one subcommand per pipeline stage, each reading ``params.yaml``.

Heavy modules are imported inside the commands so ``samsar --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from samsar.config import DEFAULT_PARAMS, Params, ParamsError, load_params

app = typer.Typer(help="SAM adapted to SAR semantic segmentation: pipeline stages and tools.", no_args_is_help=True)
models_app = typer.Typer(help="Inspect model variants.", no_args_is_help=True)
app.add_typer(models_app, name="models")

ParamsOpt = Annotated[Path, typer.Option("--params", "-p", help="Parameters file.")]
VariantOpt = Annotated[str, typer.Option("--variant", "-v", help="Variant name from params.yaml `variants`.")]


def _params(path: Path) -> Params:
    from samsar.models.variants import VARIANTS

    try:
        return load_params(path, known_variants=VARIANTS)
    except ParamsError as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(2) from exc


def _check_variant(params: Params, variant: str) -> None:
    from samsar.models.variants import VARIANTS

    if variant not in VARIANTS:
        typer.secho(f"unknown variant '{variant}'; known: {', '.join(sorted(VARIANTS))}", fg="red", err=True)
        raise typer.Exit(2)


def _run_data_stage(stage, params: Params):
    """Run a data stage; a bad input (DataError) becomes one red paragraph and exit code 1."""
    from samsar.data.errors import DataError

    try:
        return stage(params)
    except DataError as exc:
        typer.secho(f"error: {' '.join(str(exc).split())}", fg="red", err=True)
        raise typer.Exit(1) from exc


def _registry_call(action, *args, **kwargs):
    """Run a registry action; a RegistryError becomes one red line and exit code 1."""
    from samsar.tracking.registry import RegistryError

    try:
        return action(*args, **kwargs)
    except RegistryError as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(1) from exc


@app.command()
def prepare(params: ParamsOpt = DEFAULT_PARAMS) -> None:
    """Get raw data into data/raw (synthetic generator, FUSAR-Map, image folder or one scene)."""
    from samsar.data.prepare import prepare as run

    _run_data_stage(run, _params(params))


@app.command()
def preprocess(params: ParamsOpt = DEFAULT_PARAMS) -> None:
    """SAR scaling, tiling, spatial split and manifest into data/processed."""
    from samsar.data.preprocess import preprocess as run

    _run_data_stage(run, _params(params))


@app.command()
def validate(params: ParamsOpt = DEFAULT_PARAMS) -> None:
    """Check the processed dataset; write reports/validation.json; exit 1 listing every problem."""
    from samsar.data.validate import validate as run

    report = _run_data_stage(run, _params(params))
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def pretrain(params: ParamsOpt = DEFAULT_PARAMS) -> None:
    """Train the stand-in base model on the source domain (skipped when a real checkpoint is set)."""
    p = _params(params)
    from samsar.training.pretrain import pretrain as run

    run(p)


@app.command()
def train(
    variant: VariantOpt,
    params: ParamsOpt = DEFAULT_PARAMS,
    resume: Annotated[bool, typer.Option(help="Continue from the last checkpoint of this variant.")] = False,
    flow: Annotated[bool, typer.Option(help="Run as a Prefect flow (local ephemeral mode).")] = True,
) -> None:
    """Train one variant (as a Prefect flow run, in-process)."""
    p = _params(params)
    _check_variant(p, variant)
    if flow:
        from pipelines.flows import train_flow

        train_flow(params_path=str(params.resolve()), variant=variant, resume=resume)
    else:
        from samsar.training.loop import train_variant

        train_variant(p, variant, resume=resume)


@app.command()
def evaluate(variant: VariantOpt, params: ParamsOpt = DEFAULT_PARAMS) -> None:
    """Test-split metrics, confusion matrices and overlays for one variant."""
    p = _params(params)
    _check_variant(p, variant)
    from samsar.evaluation.runner import evaluate_variant

    evaluate_variant(p, variant)


@app.command()
def card(variant: VariantOpt, params: ParamsOpt = DEFAULT_PARAMS) -> None:
    """Render the model card (Markdown and HTML) of one variant."""
    p = _params(params)
    _check_variant(p, variant)
    from samsar.reporting.card import write_card

    write_card(p, variant)


@app.command()
def compare(params: ParamsOpt = DEFAULT_PARAMS) -> None:
    """Write reports/comparison.md across all variants."""
    p = _params(params)
    from samsar.reporting.comparison import write_comparison

    write_comparison(p)


@app.command()
def register(params: ParamsOpt = DEFAULT_PARAMS) -> None:
    """Register every evaluated variant in MLflow, best by validation mIoU as `challenger`, and run the gate."""
    p = _params(params)
    from samsar.tracking.registry import register_and_promote

    _registry_call(register_and_promote, p)


@app.command()
def promote(
    params: ParamsOpt = DEFAULT_PARAMS,
    version: Annotated[Optional[int], typer.Option(help="Model version to consider (default: the challenger).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the decision without acting or recording it.")] = False,
) -> None:
    """Move alias `champion` to the challenger only if it passes the gate (test-mIoU interval, classes, baseline)."""
    p = _params(params)
    from samsar.tracking.registry import promote as run

    _registry_call(run, p, version=version, dry_run=dry_run)


@app.command()
def history(
    params: ParamsOpt = DEFAULT_PARAMS,
    as_json: Annotated[bool, typer.Option("--json", help="Print the decisions as JSON.")] = False,
) -> None:
    """Print every recorded promotion decision (promotions, refusals, rollbacks) with its numbers."""
    p = _params(params)
    import json

    from samsar.tracking.registry import promotion_history, show_history
    from samsar.tracking.store import model_name

    records = _registry_call(promotion_history, p)
    if as_json:
        typer.echo(json.dumps(records, indent=2))
    else:
        show_history(records, model_name(p))


@app.command()
def rollback(params: ParamsOpt = DEFAULT_PARAMS) -> None:
    """Move alias `champion` back to the previous champion; the rollback is recorded in the history."""
    p = _params(params)
    from samsar.tracking.registry import rollback as run

    _registry_call(run, p)


@app.command()
def predict(
    model: Annotated[str, typer.Option(help="Adapter directory or MLflow URI models:/NAME@ALIAS.")],
    input: Annotated[Path, typer.Option("--input", "-i", help="SAR scene (GeoTIFF/TIFF/PNG).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Class map GeoTIFF to write.")],
    params: ParamsOpt = DEFAULT_PARAMS,
    batch_size: Annotated[int, typer.Option(min=1, help="Windows per forward pass.")] = 8,
    overlap: Annotated[float, typer.Option(min=0.0, max=0.9, help="Window overlap fraction.")] = 0.25,
    confidence: Annotated[bool, typer.Option(help="Also write a per-pixel confidence raster.")] = False,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = "auto",
    overwrite: Annotated[bool, typer.Option(help="Replace output files that already exist.")] = False,
) -> None:
    """Classify a whole SAR scene with sliding windows into a georeferenced class map.

    Also writes <output stem>_preview.png, <output stem>_areas.csv and, with --confidence,
    <output stem>_confidence.tif. A failed run leaves none of them behind.
    """
    from samsar.inference.predict import PredictError, predict_scene

    try:
        result = predict_scene(
            model=model,
            input_path=input,
            output_path=output,
            batch_size=batch_size,
            overlap=overlap,
            confidence=confidence,
            device=device,
            params=_params(params) if params.exists() else None,
            overwrite=overwrite,
        )
    except PredictError as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(2) from exc
    written = [result.class_map, result.preview, result.areas] + ([result.confidence] if result.confidence else [])
    typer.echo(f"{result.windows} windows in {result.seconds:.1f} s; wrote " + ", ".join(map(str, written)))
    if result.area_note:
        typer.echo(result.area_note)


@app.command()
def ui(
    params: ParamsOpt = DEFAULT_PARAMS,
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 5000,
) -> None:
    """Start the MLflow UI on 127.0.0.1 over the project's tracking store."""
    p = _params(params)
    from samsar.tracking.store import serve_ui

    serve_ui(p, port=port)


@models_app.command("describe")
def models_describe(
    backbone: Annotated[str, typer.Option(help="tiny | vit_b | vit_l | vit_h")] = "vit_b",
    classes: Annotated[int, typer.Option(help="Number of classes K.")] = 5,
    image_size: Annotated[int, typer.Option(help="Input size for the FLOP count.")] = 1024,
) -> None:
    """Print total/trainable parameters, artifact size and forward GFLOPs per variant."""
    from samsar.models.describe import describe

    describe(backbone=backbone, num_classes=classes, image_size=image_size)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
