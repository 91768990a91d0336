"""An adapter as an MLflow pyfunc model: SAR array in, class map out.

The model's artifacts are the adapter directory and, when it is small enough, the base SAM
checkpoint it was trained on (the pretrained stand-in). A bigger checkpoint is only referenced:
adapter.json records its path and sha256; where that path does not exist, point
``$SAMSAR_BASE_CHECKPOINT`` at a copy (the hash is checked either way).

A box_prompt model (``<method>-box``) takes its box prompts as the ``boxes`` param: a flat list
``[x0, y0, x1, y1, x0, ...]`` of pixel boxes of the input array; predicting without is an error.
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
from mlflow.models import ModelSignature, infer_signature
from mlflow.pyfunc import PythonModel, PythonModelContext
from mlflow.types import ParamSchema, ParamSpec, Schema, TensorSpec

from samsar.config import Params
from samsar.io import write_json
from samsar.models.artifacts import CONFIG_FILE, RANDOM_INIT_PREFIX, load_adapter, read_adapter_config
from samsar.tracking import store

ADAPTER_KEY = "adapter"
CHECKPOINT_KEY = "base_checkpoint"
CHECKPOINT_ENV = "SAMSAR_BASE_CHECKPOINT"
ENTRY_POINT = Path(__file__).with_name("pyfunc_entry.py")
EXAMPLE_SIZE = 64
BOXES_PARAM = "boxes"


class AdapterModel(PythonModel):
    """Loads the adapter with ``samsar.models.artifacts.load_adapter``; predicts with ``Predictor``."""

    def load_context(self, context: PythonModelContext) -> None:
        from samsar.inference.predictor import Predictor

        # None: load_adapter uses the path recorded in adapter.json.
        checkpoint = context.artifacts.get(CHECKPOINT_KEY) or os.environ.get(CHECKPOINT_ENV)
        segmenter, meta = load_adapter(Path(context.artifacts[ADAPTER_KEY]), checkpoint=checkpoint)
        self.predictor = Predictor(segmenter, meta, device=os.environ.get("SAMSAR_DEVICE", "auto"))

    def predict(self, context: PythonModelContext | None, model_input: np.ndarray, params: dict | None = None) -> np.ndarray:
        """Class map (uint8, H x W) of one SAR array (H x W or H x W x C, raw values); a box_prompt
        model needs ``params={"boxes": [x0, y0, x1, y1, ...]}`` (pixels of the array)."""
        flat = (params or {}).get(BOXES_PARAM)
        flat = [] if flat is None else list(flat)
        if not self.predictor.takes_boxes:
            if flat:
                raise ValueError(f"params.{BOXES_PARAM}: this model's classwise head takes no boxes; leave the param out")
            return self.predictor.predict_array(np.asarray(model_input))
        if len(flat) == 0 or len(flat) % 4:
            raise ValueError(f"params.{BOXES_PARAM}: this model uses the box_prompt head; pass its box prompts as a flat "
                             f"list [x0, y0, x1, y1, ...] of pixel boxes (4 numbers per box), got {len(flat)} numbers")
        return self.predictor.predict_array(np.asarray(model_input), boxes=np.asarray(flat, dtype=np.float32).reshape(-1, 4))


def example_tile(bands: int = 1, size: int = EXAMPLE_SIZE, seed: int = 0) -> np.ndarray:
    """A single-look speckle intensity tile (float32; H x W for one band, else H x W x bands)."""
    shape = (size, size) if bands == 1 else (size, size, bands)
    return np.random.default_rng(seed).gamma(1.0, 1.0, shape).astype(np.float32)


def model_artifacts(params: Params, adapter_dir: Path) -> dict[str, str]:
    """The pyfunc's artifacts: the adapter, plus its base checkpoint when that is at most
    ``tracking.max_logged_checkpoint_mb`` (bigger ones stay referenced in adapter.json)."""
    artifacts = {ADAPTER_KEY: str(adapter_dir)}
    config = read_adapter_config(adapter_dir)
    if config["base_id"].startswith(RANDOM_INIT_PREFIX) or not config.get("base_checkpoint"):
        return artifacts
    checkpoint = params.path(config["base_checkpoint"])
    if checkpoint.is_file() and checkpoint.stat().st_size <= params.tracking.max_logged_checkpoint_mb * 2**20:
        artifacts[CHECKPOINT_KEY] = str(checkpoint)
    return artifacts


def example_params(model: AdapterModel, example: np.ndarray) -> dict | None:
    """Params of the input example: for a box_prompt model one box around the example tile's centre."""
    if not model.predictor.takes_boxes:
        return None
    h, w = example.shape[:2]
    return {BOXES_PARAM: [w / 4, h / 4, 3 * w / 4 - 1, 3 * h / 4 - 1]}


def adapter_signature(model: AdapterModel, example: np.ndarray) -> ModelSignature:
    """Signature inferred from the example tile and its prediction, any height and width allowed.

    The tile has the band count the model was trained on: H x W for single-band SAR, H x W x C otherwise.
    A box_prompt model also declares the ``boxes`` param (default empty: predicting without is an error).
    """
    inferred = infer_signature(example, model.predict(None, example, example_params(model, example)))

    def any_size(schema: Schema) -> Schema:
        return Schema([TensorSpec(spec.type, (-1,) * len(spec.shape), spec.name) for spec in schema.inputs])

    params = ParamSchema([ParamSpec(BOXES_PARAM, "double", [], (-1,))]) if model.predictor.takes_boxes else None
    return ModelSignature(inputs=any_size(inferred.inputs), outputs=any_size(inferred.outputs), params=params)


def log_adapter_model(params: Params, run_id: str, adapter_dir: Path) -> str:
    """Log ``adapter_dir`` into run ``run_id`` as a pyfunc model with signature and input example.

    Returns the model URI (``models:/<model_id>``).
    """
    if not (adapter_dir / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"{adapter_dir}: no adapter.json here; train the variant first (`samsar train`)")
    artifacts = model_artifacts(params, adapter_dir)
    model = AdapterModel()
    model.load_context(PythonModelContext(artifacts=artifacts, model_config={}))
    example = example_tile(bands=model.predictor.input_bands)
    signature = adapter_signature(model, example)
    if not sys.stderr.isatty():  # MLflow's download bars while it validates the example
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    with store.as_process_default(store.tracking_uri(params)), mlflow.start_run(run_id=run_id):
        info = mlflow.pyfunc.log_model(
            name=store.PYFUNC_MODEL_NAME,
            python_model=str(ENTRY_POINT),
            artifacts=artifacts,
            signature=signature,
            input_example=example if example_params(model, example) is None else (example, example_params(model, example)),
            pip_requirements=_requirements(),
        )
    return info.model_uri


def _requirements() -> list[str]:
    import torch

    import samsar

    return [f"samsar=={samsar.__version__}", f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}"]


@dataclass(frozen=True)
class DownloadedModel:
    """A pyfunc model copied to local disk: its adapter directory and bundled base checkpoint (if any)."""

    adapter_dir: Path
    base_checkpoint: Path | None


def download_model(uri: str, dst: Path, tracking_uri: str | None = None) -> DownloadedModel:
    """Download a ``models:/NAME@ALIAS`` (or ``models:/NAME/VERSION``, ``runs:/``) pyfunc model into ``dst``.

    The returned adapter directory loads with ``load_adapter(adapter_dir)`` alone: when the base
    checkpoint was logged with the model, the downloaded adapter.json points at its copy. The
    caller owns ``dst`` (e.g. a ``tempfile.TemporaryDirectory``): nothing is left elsewhere.

    ``tracking_uri`` None: MLflow's current one (``mlflow.set_tracking_uri`` or ``$MLFLOW_TRACKING_URI``);
    pass ``store.tracking_uri(params, create=False)`` for the project store.
    """
    dst = Path(dst)
    with store.as_process_default(tracking_uri) if tracking_uri else contextlib.nullcontext():
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst)))
    flavor = mlflow.models.Model.load(local).flavors.get("python_function", {})
    paths = {key: local / info["path"] for key, info in flavor.get("artifacts", {}).items()}
    if ADAPTER_KEY not in paths:
        raise ValueError(f"{uri}: not a samsar adapter model (no '{ADAPTER_KEY}' artifact in its MLmodel)")
    checkpoint = paths.get(CHECKPOINT_KEY)
    if checkpoint is not None:
        # Point the downloaded copy at the bundled checkpoint, so load_adapter(adapter_dir) finds it.
        config = read_adapter_config(paths[ADAPTER_KEY])
        write_json(paths[ADAPTER_KEY] / CONFIG_FILE, {**config, "base_checkpoint": str(checkpoint.resolve())})
    return DownloadedModel(adapter_dir=paths[ADAPTER_KEY], base_checkpoint=checkpoint)


def download_adapter(uri: str, dst: Path, tracking_uri: str | None = None) -> Path:
    """Download a registered adapter model (with its bundled base checkpoint) into ``dst``; returns its adapter directory."""
    return download_model(uri, dst, tracking_uri=tracking_uri).adapter_dir
