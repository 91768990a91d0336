"""The ``samsar`` command: one subcommand per pipeline stage, each reading ``params.yaml``.

Heavy modules are imported inside the commands so ``samsar --help`` stays fast.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperGroup

from samsar.config import DEFAULT_PARAMS, Params, ParamsError, box_head_fits, load_params
from samsar.errors import DEBUG_ENV, Interrupted, SamsarError, debug_enabled, one_line

# Exit statuses: 1 a failed check or expected error, 2 bad params or usage, 128 + N stopped by signal N.
EXIT_ERROR, EXIT_USAGE = 1, 2


def _raise_interrupted(signum: int, frame: Any) -> None:
    raise Interrupted(signum)


class _ErrorBoundary(TyperGroup):
    """Runs a subcommand; an expected error (:class:`SamsarError`, OSError) becomes one red line
    ``error: ...`` and a non-zero exit, SIGTERM and Ctrl+C end it cleanly with 128 + the signal.
    ``--debug`` or ``SAMSAR_DEBUG=1`` lets the traceback through instead."""

    def invoke(self, ctx: typer.Context) -> Any:
        previous = signal.signal(signal.SIGTERM, _raise_interrupted)  # finally blocks run: runs end KILLED, children stop
        try:
            return super().invoke(ctx)
        except (SamsarError, OSError, KeyboardInterrupt) as exc:
            if debug_enabled():  # SAMSAR_DEBUG, also set by --debug (see _options)
                raise
            if isinstance(exc, KeyboardInterrupt):
                signum, hint = (exc.signum, exc.hint) if isinstance(exc, Interrupted) else (signal.SIGINT, "")
                hint = hint or "nothing was half-written (outputs are renamed into place only when complete)"
                typer.secho(f"interrupted by {signal.Signals(signum).name}; {hint}", fg="yellow", err=True)
                raise typer.Exit(128 + signum) from exc
            typer.secho(f"error: {one_line(exc)}", fg="red", err=True)
            code = EXIT_USAGE if isinstance(exc, ParamsError) else EXIT_ERROR
            raise typer.Exit(code) from exc
        finally:
            signal.signal(signal.SIGTERM, previous)


app = typer.Typer(
    cls=_ErrorBoundary,
    help="SAM adapted to SAR semantic segmentation: pipeline stages and tools.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
models_app = typer.Typer(help="Inspect model variants.", no_args_is_help=True)
app.add_typer(models_app, name="models")
remote_app = typer.Typer(help="The DVC remote that GPU workers pull data from.", no_args_is_help=True)
app.add_typer(remote_app, name="remote")


@app.callback()
def _options(
    debug: Annotated[bool, typer.Option("--debug", help=f"Show the traceback of expected errors (or set {DEBUG_ENV}=1).")] = False,
) -> None:
    """SAM adapted to SAR semantic segmentation: pipeline stages and tools."""
    if debug:
        os.environ[DEBUG_ENV] = "1"  # also for Prefect's run logs (pipelines/flows.py)

ParamsOpt = Annotated[Path, typer.Option("--params", "-p", help="Parameters file.")]
VariantOpt = Annotated[str, typer.Option("--variant", "-v", help="Variant name from params.yaml `variants`.")]


def _params(path: Path, inputs: bool = False) -> Params:
    """The validated params; ``inputs``: the command reads the source data or the base checkpoint,
    so their paths must exist."""
    from samsar.models.variants import VARIANTS

    params = load_params(path, known_variants=VARIANTS, check_inputs=inputs)
    _keep_tool_state_in_project(params.root)
    return params


def _keep_tool_state_in_project(root: Path) -> None:
    """Prefect's database and matplotlib's font cache go under the project (both gitignored), not
    into $HOME, unless the user set their own places. Runs before either library is imported."""
    os.environ.setdefault("PREFECT_HOME", str(root.resolve() / ".prefect"))
    os.environ.setdefault("MPLCONFIGDIR", str(root.resolve() / ".cache" / "matplotlib"))


def _check_variant(params: Params, variant: str) -> None:
    from samsar.models.variants import VARIANTS, parse_variant

    try:
        _, head = parse_variant(variant, params.variant_options)
    except ValueError:
        raise ParamsError(f"--variant: unknown variant '{variant}'; pass one of {', '.join(sorted(VARIANTS))} "
                          f"(each also as <method>-box)") from None
    names, background = params.data.class_names, params.data.background
    if head == "box_prompt" and not box_head_fits(names, background):
        raise ParamsError(f"--variant: '{variant}' uses the box_prompt head, which predicts background/object: it needs "
                          f"2 data.classes with the background first, got {names} (background {background!r}); "
                          f"pick a classwise variant")


@app.command()
def prepare(params: ParamsOpt = DEFAULT_PARAMS) -> None:
    """Get raw data into data/raw (synthetic generator, FUSAR-Map, image folder or one scene)."""
    from samsar.data.prepare import prepare as run

    run(_params(params, inputs=True))


@app.command()
def preprocess(params: ParamsOpt = DEFAULT_PARAMS) -> None:
    """SAR scaling, tiling, spatial split and manifest into data/processed."""
    from samsar.data.preprocess import preprocess as run

    run(_params(params, inputs=True))


@app.command()
def validate(params: ParamsOpt = DEFAULT_PARAMS) -> None:
    """Check the processed dataset; write reports/validation.json; exit 1 listing every problem."""
    from samsar.data.validate import validate as run

    report = run(_params(params))
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def pretrain(params: ParamsOpt = DEFAULT_PARAMS) -> None:
    """Train the stand-in base model on the source domain (skipped when a real checkpoint is set)."""
    p = _params(params, inputs=True)
    from samsar.training.pretrain import pretrain as run

    run(p)


@app.command()
def train(
    variant: VariantOpt,
    params: ParamsOpt = DEFAULT_PARAMS,
    resume: Annotated[bool, typer.Option(help="Continue from the last checkpoint of this variant.")] = False,
    force_resume: Annotated[bool, typer.Option(
        "--force-resume", help="Resume even from checkpoints made with other training params or data (implies --resume)."
    )] = False,
    flow: Annotated[bool, typer.Option(help="Run as a Prefect flow (local ephemeral mode).")] = True,
) -> None:
    """Train one variant (as a Prefect flow run, in-process)."""
    p = _params(params, inputs=True)
    _check_variant(p, variant)
    if flow:
        from pipelines.flows import train_flow

        train_flow(params_path=str(params.resolve()), variant=variant, resume=resume, force_resume=force_resume)
    else:
        from samsar.training.loop import train_variant

        train_variant(p, variant, resume=resume, force_resume=force_resume)


@app.command()
def evaluate(variant: VariantOpt, params: ParamsOpt = DEFAULT_PARAMS) -> None:
    """Test-split metrics, confusion matrices and overlays for one variant."""
    p = _params(params, inputs=True)
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
    """Write reports/comparison.md and results/val_curves.csv across all variants."""
    p = _params(params)
    from samsar.reporting.comparison import write_comparison
    from samsar.training.curves import write_val_curves

    write_comparison(p)
    write_val_curves(p)


@app.command()
def register(params: ParamsOpt = DEFAULT_PARAMS) -> None:
    """Register every evaluated variant in MLflow, best by validation mIoU as `challenger`, and run the gate."""
    p = _params(params)
    from samsar.tracking.registry import register_and_promote

    register_and_promote(p)


HeadOpt = Annotated[Optional[str], typer.Option(
    help="Registered model of this head: classwise (samsar-<data.name>) or box_prompt (samsar-<data.name>-box); "
         "default: the head of params' variants (needed when they use both).")]


@app.command()
def promote(
    params: ParamsOpt = DEFAULT_PARAMS,
    version: Annotated[Optional[int], typer.Option(help="Model version to consider (default: the challenger).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the decision without acting or recording it.")] = False,
    head: HeadOpt = None,
) -> None:
    """Move alias `champion` to the challenger only if it passes the gate (test-mIoU interval, classes, baseline)."""
    p = _params(params)
    from samsar.tracking.registry import promote as run

    run(p, version=version, dry_run=dry_run, head=head)


@app.command()
def history(
    params: ParamsOpt = DEFAULT_PARAMS,
    as_json: Annotated[bool, typer.Option("--json", help="Print the decisions as JSON.")] = False,
    head: HeadOpt = None,
) -> None:
    """Print every recorded promotion decision (promotions, refusals, rollbacks) with its numbers."""
    p = _params(params)
    import json

    from samsar.tracking.registry import model_name, promotion_history, resolve_head, show_history

    records = promotion_history(p, head)
    if as_json:
        typer.echo(json.dumps(records, indent=2))
    else:
        show_history(records, model_name(p, resolve_head(p, head)))


@app.command()
def rollback(params: ParamsOpt = DEFAULT_PARAMS, head: HeadOpt = None) -> None:
    """Move alias `champion` back to the previous champion; the rollback is recorded in the history."""
    p = _params(params)
    from samsar.tracking.registry import rollback as run

    run(p, head=head)


@app.command()
def predict(
    model: Annotated[str, typer.Option(help="Adapter directory or MLflow URI models:/NAME@ALIAS.")],
    input: Annotated[Path, typer.Option("--input", "-i", help="SAR scene (GeoTIFF/TIFF/PNG), or a folder of GeoTIFFs / .txt list of scenes.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Class map GeoTIFF to write (an output folder for many scenes).")],
    params: ParamsOpt = DEFAULT_PARAMS,
    batch_size: Annotated[int, typer.Option(min=1, help="Windows per forward pass.")] = 8,
    overlap: Annotated[float, typer.Option(min=0.0, max=0.9, help="Window overlap fraction.")] = 0.25,
    confidence: Annotated[bool, typer.Option(help="Also write a per-pixel confidence raster.")] = False,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = "auto",
    overwrite: Annotated[bool, typer.Option(help="Replace output files that already exist.")] = False,
    boxes: Annotated[Optional[Path], typer.Option(
        help="Box prompts for a box_prompt (<method>-box) model: GeoJSON in the scene's CRS, or CSV with header x0,y0,x1,y1 (pixels).")] = None,
    min_mapping_unit: Annotated[int, typer.Option(
        min=0, help="Minimum mapping unit in pixels: regions and holes smaller than this take the class around them (0 = off).")] = 0,
) -> None:
    """Classify a whole SAR scene with sliding windows into a georeferenced class map.

    Also writes <output stem>_preview.png, <output stem>_areas.csv and, with --confidence,
    <output stem>_confidence.tif. A failed run leaves none of them behind.

    Many scenes (--input a folder or a .txt list, --output a folder): each scene as above, scenes
    already done with the same model skipped, then mosaic.vrt and areas.csv over all of them.
    """
    from samsar.inference.batch import is_batch_input, map_scenes
    from samsar.inference.predict import predict_scene

    if is_batch_input(input):
        batch = map_scenes(model, input, output, params=_params(params) if params.exists() else None, overwrite=overwrite,
                           report=lambda line: typer.echo(line, err=True), batch_size=batch_size, overlap=overlap,
                           confidence=confidence, device=device, boxes=boxes, min_mapping_unit=min_mapping_unit)
        typer.echo(f"{len(batch.mapped)} scene(s) mapped, {len(batch.skipped)} skipped in {batch.seconds:.1f} s; "
                   f"wrote {batch.mosaic}, {batch.areas}")
        return
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
        boxes=boxes,
        min_mapping_unit=min_mapping_unit,
    )
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


@remote_app.command("add")
def remote_add(
    url: Annotated[str, typer.Argument(help="A local or shared path, s3://bucket/path, ssh://host/path, ...")],
    force: Annotated[bool, typer.Option("--force", help="Replace another default remote.")] = False,
    root: Annotated[Path, typer.Option(help="The DVC repository.")] = Path("."),
) -> None:
    """Make URL the project's default DVC remote (`dvc remote add -d samsar URL`); prints what to commit."""
    from samsar.remote import add_remote

    typer.echo(add_remote(root, url, force=force))


@models_app.command("describe")
def models_describe(
    backbone: Annotated[Optional[str], typer.Option(help="tiny | vit_b | vit_l | vit_h [default: the params file's, else vit_b]")] = None,
    classes: Annotated[Optional[int], typer.Option(help="Number of classes K [default: the params file's, else 5].")] = None,
    image_size: Annotated[Optional[int], typer.Option(help="Input size for the FLOP count [default: the params file's, else 1024].")] = None,
    params: Annotated[Optional[Path], typer.Option("--params", "-p", help=(
        "Take variant_options (head, LoRA targets, adapter size, ...) and the defaults above from this params file, "
        "e.g. examples/params-parser-paper.yaml for the SAM-PARSER paper's columns."))] = None,
) -> None:
    """Print parameter counts (K = 1024), artifact size and forward GFLOPs per variant."""
    from samsar.models.describe import describe

    p = _params(params) if params is not None else None
    describe(
        backbone=backbone or (p.model.backbone if p else "vit_b"),
        num_classes=classes or (p.data.num_classes if p else 5),
        image_size=image_size or (p.model.image_size if p else 1024),
        options=p.variant_options if p else None,
    )


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
