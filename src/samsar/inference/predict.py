"""``samsar predict``: classify a whole SAR scene into a georeferenced class map.

Outputs, all written beside ``output_path`` through temporary files renamed at the end (a
failed run leaves none of them behind):

- ``<output>``: single-band uint8 GeoTIFF with the scene's CRS and transform, a colour table
  from the class colours, 255 where the scene has no data;
- ``<stem>_preview.png``: downsampled coloured preview;
- ``<stem>_areas.csv``: pixel count, fraction and area (km2, projected CRS only) per class;
- ``<stem>_confidence.tif`` (optional): max softmax probability x 255 as uint8, 0 = no data.

A box_prompt model (variant ``<method>-box``) needs ``boxes``, a GeoJSON or CSV file of box
prompts (:mod:`samsar.inference.boxes`); a classwise model refuses them.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from samsar.config import DEFAULT_PARAMS, Params
from samsar.data.tiling import window_starts
from samsar.inference.boxes import read_boxes
from samsar.inference.errors import PredictError
from samsar.inference.outputs import NODATA_CLASS, ClassCounter, PreviewSampler, colormap, write_area_table
from samsar.inference.postprocess import MinimumMappingUnit, mmu_tags
from samsar.inference.predictor import Predictor
from samsar.inference.raster import RowWriter, SceneReader, gdal_env
from samsar.io import atomic_path, name_os_errors
from samsar.progress import Progress

__all__ = ["PredictError", "PredictResult", "load_model", "output_paths", "predict_scene", "resolve_model"]

MODEL_URI_PREFIX = "models:/"
AREA_NOTE_PIXELS = "areas in pixels only: the scene has no projected CRS with a linear unit"


@dataclass(frozen=True)
class PredictResult:
    """What a scene prediction wrote and found."""

    class_map: Path
    preview: Path
    areas: Path
    confidence: Path | None
    counts: dict[str, int]
    area_note: str | None  # set when areas are in pixels only
    windows: int
    seconds: float


def output_paths(output_path: Path) -> dict[str, Path]:
    """The files written for class map ``output_path``."""
    stem = output_path.with_suffix("")
    return {
        "class_map": output_path,
        "preview": Path(f"{stem}_preview.png"),
        "areas": Path(f"{stem}_areas.csv"),
        "confidence": Path(f"{stem}_confidence.tif"),
    }


def dataset_dirs(params: Params | None) -> list[Path]:
    """The folders of the project's data (raw, processed and the configured source), which predict never writes into."""
    if params is None:
        return []
    data = params.data
    source = {"fusar_map": data.fusar_map, "folder": data.folder}.get(data.source)
    dirs = [params.raw_dir, params.processed_dir]
    if source is not None:
        dirs.append(params.path(source.root))
    if data.source == "scene":
        dirs += [params.path(data.scene.image).parent, params.path(data.scene.label).parent]
    return [d.resolve() for d in dirs]


def check_outputs(input_path: Path, outputs: dict[str, Path], overwrite: bool = False,
                  protected: list[Path] = ()) -> None:
    """Refuse outputs that would destroy what the user did not ask to replace: a directory,
    the input scene itself, a path inside the dataset that holds the input (one of
    ``protected``), or (without ``overwrite``) an existing file."""
    source = input_path.resolve()
    datasets = [d for d in protected if source.is_relative_to(d)]
    for path in outputs.values():
        if path.is_dir():
            raise PredictError(f"{path}: is a directory; give --output a file path, e.g. {path / 'classes.tif'}")
        if path.resolve() == source:
            raise PredictError(f"{path}: is the input scene; choose another --output so the input is kept")
        inside = [d for d in datasets if path.resolve().is_relative_to(d)]
        if inside:
            raise PredictError(f"{path}: is inside the dataset {inside[0]} that holds the input; write the output outside it")
        if path.exists() and not overwrite:
            raise PredictError(f"{path}: already exists; pass --overwrite to replace it, or choose another --output")


def resolve_model(model: str | Path, params: Params | None = None, download_dir: Path | None = None) -> Path:
    """Adapter directory of ``model``: a directory holding ``adapter.json``, or a ``models:/NAME@ALIAS``
    (or ``models:/NAME/VERSION``) registry URI, downloaded from the tracking store (see
    :func:`registry_store`) into ``download_dir``, which the caller provides and removes."""
    if str(model).startswith(MODEL_URI_PREFIX):
        if download_dir is None:
            raise ValueError("resolve_model: a registry URI needs download_dir (a directory the caller removes)")
        return _download_registered(str(model), registry_store(str(model), params), download_dir)
    path = Path(model)
    if not (path / "adapter.json").is_file():
        raise PredictError(
            f"{path}: not an adapter directory (no adapter.json); pass models/<variant>/adapter "
            f"or a registry URI such as models:/samsar-<dataset>@champion"
        )
    return path


def registry_store(uri: str, params: Params | None) -> str:
    """The existing tracking store to load registry model ``uri`` from: the project's of ``params``,
    else ``$MLFLOW_TRACKING_URI``; never MLflow's default (it would create ``./mlflow.db``)."""
    from samsar.tracking.store import StoreError, existing_store, tracking_uri

    configured = os.environ.get("MLFLOW_TRACKING_URI")
    if params is None and not configured:
        raise PredictError(
            f"{uri}: no tracking store to load it from: no params file ({DEFAULT_PARAMS} in {Path.cwd()} or --params) "
            f"and $MLFLOW_TRACKING_URI is not set; pass --params <project>/params.yaml or set MLFLOW_TRACKING_URI"
        )
    try:
        return tracking_uri(params, create=False) if params is not None else existing_store(configured)
    except StoreError as exc:
        raise PredictError(f"{uri}: {exc}") from exc


def _download_registered(uri: str, store_uri: str, download_dir: Path) -> Path:
    from mlflow.exceptions import MlflowException

    from samsar.tracking.pyfunc import download_adapter

    try:
        return download_adapter(uri, dst=download_dir, tracking_uri=store_uri)
    except (MlflowException, ValueError, OSError) as exc:
        raise PredictError(
            f"{uri}: cannot be loaded from the tracking store {store_uri} ({exc}); check the name and alias "
            f"(`samsar register`) and --params / $MLFLOW_TRACKING_URI"
        ) from exc


def load_model(adapter_dir: Path, params: Params | None = None):
    """``(segmenter, meta)`` for inference: the adapter on its base checkpoint, merged where the method allows.

    The base checkpoint is the one params.yaml names (``model.checkpoint`` or the pretrained
    stand-in) when that file exists, else the path recorded in adapter.json.
    """
    from samsar.models.artifacts import RANDOM_INIT_PREFIX, ArtifactError, BaseMismatchError, load_adapter, read_adapter_config

    try:
        base_id = read_adapter_config(adapter_dir)["base_id"]
        checkpoint = None
        if params is not None and not base_id.startswith(RANDOM_INIT_PREFIX):
            from samsar.tracking.provenance import base_checkpoint_path

            configured = base_checkpoint_path(params)
            checkpoint = configured if configured is not None and configured.is_file() else None
        segmenter, meta = load_adapter(adapter_dir, checkpoint=checkpoint)
    except FileNotFoundError as exc:
        raise PredictError(
            f"{adapter_dir}: the base checkpoint of this adapter is missing ({exc}); set model.checkpoint "
            f"in params.yaml (--params) to the SAM checkpoint it was trained on, or run `samsar pretrain`"
        ) from exc
    except (ArtifactError, BaseMismatchError) as exc:
        raise PredictError(str(exc)) from exc
    if segmenter.method.mergeable:
        segmenter.merge()
    return segmenter, meta


def predict_scene(
    model: str | Path,
    input_path: Path | str,
    output_path: Path | str,
    batch_size: int = 8,
    overlap: float = 0.25,
    confidence: bool = False,
    device: str = "auto",
    params: Params | None = None,
    overwrite: bool = False,
    boxes: Path | str | None = None,
    min_mapping_unit: int = 0,
) -> PredictResult:
    """Classify a scene of any size into a class map, a preview and an area table (see module doc).

    Existing output files are replaced only with ``overwrite``; see :func:`check_outputs`.
    ``min_mapping_unit`` (pixels, 0 = off): regions and holes smaller than that are absorbed by the
    class around them (:mod:`samsar.inference.postprocess`), recorded in the class map's tags.
    """
    started = time.perf_counter()
    if min_mapping_unit < 0:
        raise PredictError(f"--min-mapping-unit {min_mapping_unit}: must be >= 0 pixels (0 = off)")
    input_path, output_path = Path(input_path), Path(output_path)
    paths = {name: path for name, path in output_paths(output_path).items() if confidence or name != "confidence"}
    check_outputs(input_path, paths, overwrite, dataset_dirs(params))
    # A registry model is downloaded into a temporary directory removed when prediction ends.
    with tempfile.TemporaryDirectory(prefix="samsar-model-") as download_dir, gdal_env(), SceneReader(input_path) as scene:
        segmenter, meta = load_model(resolve_model(model, params, Path(download_dir)), params)
        prompts = _scene_boxes(boxes, segmenter, scene, model)
        predictor = Predictor(segmenter, meta, device=device, batch_size=batch_size, overlap=overlap, boxes=prompts)
        _check_bands(scene, predictor)
        scene.used_bands = predictor.scaler.bands
        colors = [tuple(c) for c in meta["class_colors"]]
        counter = ClassCounter(predictor.num_classes)
        preview = PreviewSampler(scene.height, scene.width)
        geo = dict(height=scene.height, width=scene.width, crs=scene.crs, transform=scene.transform)
        with name_os_errors(output_path.parent), contextlib.ExitStack() as stack:
            tmp = {name: stack.enter_context(atomic_path(path)) for name, path in paths.items()}
            class_writer = stack.enter_context(
                RowWriter(tmp["class_map"], dtype="uint8", nodata=NODATA_CLASS, colormap=colormap(colors),
                          class_names=predictor.class_names, tags=mmu_tags(min_mapping_unit) if min_mapping_unit else None,
                          **geo)
            )
            confidence_writer = (
                stack.enter_context(RowWriter(tmp["confidence"], dtype="uint8", nodata=0, description="confidence", **geo)) if confidence else None
            )
            mmu = MinimumMappingUnit(min_mapping_unit, scene.height) if min_mapping_unit else None

            def emit(bands: list[tuple[int, np.ndarray]]) -> None:
                for row0, classes in bands:
                    class_writer.write(classes)
                    counter.add(classes)
                    preview.add(row0, classes)

            blocks = predictor.stream(scene.read_block, scene.height, scene.width)
            strips = len(window_starts(scene.height, predictor.window, predictor.stride))
            for block in Progress(strips, input_path.name, unit="strip").iterate(blocks):
                emit(mmu.push(block.row0, block.classes) if mmu else [(block.row0, block.classes)])
                if confidence_writer is not None:
                    confidence_writer.write(np.rint(block.confidence * 255).astype(np.uint8))
            if mmu:
                emit(mmu.finish())
            if counter.total == 0:
                raise PredictError(f"{input_path}: every pixel is nodata (or not finite); check the file's nodata value and content")
            preview.write_png(tmp["preview"], colors)
            pixel_area = scene.pixel_area_km2()
            write_area_table(tmp["areas"], predictor.class_names, counter.counts, pixel_area)
    return PredictResult(
        class_map=paths["class_map"],
        preview=paths["preview"],
        areas=paths["areas"],
        confidence=paths.get("confidence"),
        counts=dict(zip(predictor.class_names, counter.counts.tolist())),
        area_note=None if pixel_area is not None else AREA_NOTE_PIXELS,
        windows=predictor.windows_run,
        seconds=time.perf_counter() - started,
    )


def _scene_boxes(boxes: Path | str | None, segmenter, scene: SceneReader, model: str | Path) -> np.ndarray | None:
    """The scene's box prompts from ``boxes`` (box_prompt models), checked against the model's head."""
    takes_boxes = bool(getattr(segmenter, "takes_boxes", False))
    if takes_boxes and boxes is None:
        raise PredictError(f"{model}: the model uses the box_prompt head, which needs box prompts; pass --boxes FILE "
                           f"(GeoJSON in the scene's CRS, or CSV with header x0,y0,x1,y1 in pixels)")
    if boxes is not None and not takes_boxes:
        raise PredictError(f"{boxes}: the model {model} has the classwise head, which takes no boxes; drop --boxes")
    if boxes is None:
        return None
    return read_boxes(boxes, scene.height, scene.width, crs=scene.crs, transform=scene.transform)


def _check_bands(scene: SceneReader, predictor: Predictor) -> None:
    if scene.count != predictor.input_bands:
        raise PredictError(
            f"{scene.path}: has {scene.count} band(s) but the model was trained on {predictor.input_bands}-band input; "
            f"pass a scene with {predictor.input_bands} band(s) (or use a model trained on {scene.count}-band data)"
        )
