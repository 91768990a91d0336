"""A real (tiny, untrained) adapter logged as a pyfunc, registered, and loaded back by alias."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch

from samsar.data.scaling import SarScaler
from samsar.io import write_json
from samsar.models.artifacts import save_adapter
from samsar.models.sam import build_sam
from samsar.models.variants import build_segmenter
from samsar.tracking import pyfunc, registry, store
from samsar.tracking.runs import training_run

CLASS_NAMES = ["building", "water", "background"]


@pytest.fixture
def adapter_project(tmp_path, make_params):
    """A project whose decoder_only variant has a saved adapter on a small stand-in base checkpoint."""
    params = make_params(tmp_path, variants=["decoder_only"])
    base = params.path(params.pretrain.output)
    base.parent.mkdir(parents=True)
    sam, _ = build_sam("tiny", params.model.image_size, seed=3)
    torch.save(sam.state_dict(), base)
    segmenter = build_segmenter("decoder_only", backbone="tiny", image_size=params.model.image_size,
                                num_classes=len(CLASS_NAMES), checkpoint=str(base))
    scaler = SarScaler().fit([np.random.default_rng(0).gamma(1.0, 1.0, (64, 64))])
    meta = {"class_names": CLASS_NAMES, "class_colors": [[255, 0, 0], [0, 0, 255], [0, 0, 0]], "scaling": scaler.to_dict()}
    save_adapter(segmenter, params.variant_dir("decoder_only") / "adapter", meta)
    return params


def _train_and_register(params):
    """A training run, registered and made champion directly (the gate is tested in test_registry.py)."""
    with training_run(params, "decoder_only", seed=0) as run:
        run.log_metrics({"val_mIoU": 0.3}, step=0)
    write_json(params.variant_dir("decoder_only") / "train_summary.json", {"mlflow_run_id": run.run_id})
    write_json(params.metrics_path("decoder_only"), {"mIoU": 0.3, "val_mIoU": 0.3,
                                                     "per_class_iou": dict(zip(CLASS_NAMES, (0.2, 0.3, 0.4)))})
    version = registry.register_variant(params, "decoder_only")
    store.client(params).set_registered_model_alias("samsar-testset", "champion", version.version)
    return run.run_id


def test_champion_pyfunc_predicts_a_tile_in_a_fresh_process(adapter_project, tmp_path):
    params = adapter_project
    run_id = _train_and_register(params)
    client = store.client(params)
    version = client.get_model_version_by_alias("samsar-testset", "champion")
    assert version.run_id == run_id
    # Registering logged the adapter as the run's pyfunc model, once.
    experiment_id = client.get_run(run_id).info.experiment_id
    assert len(client.search_logged_models([experiment_id], filter_string=f"source_run_id = '{run_id}'")) == 1
    assert registry.register_variant(params, "decoder_only").version == version.version  # idempotent
    assert len(client.search_logged_models([experiment_id], filter_string=f"source_run_id = '{run_id}'")) == 1
    # The base checkpoint (a small stand-in) travels with the model.
    downloaded = pyfunc.download_model("models:/samsar-testset@champion", tracking_uri=store.tracking_uri(params), dst=tmp_path / "dl")
    assert downloaded.base_checkpoint is not None and downloaded.base_checkpoint.name == "sam_tiny_base.pth"
    assert json.loads((downloaded.adapter_dir / "adapter.json").read_text())["base_checkpoint"] == str(downloaded.base_checkpoint.resolve())

    # Fresh process, with the project's base checkpoint moved away: the bundled copy must be used.
    params.path(params.pretrain.output).rename(tmp_path / "elsewhere.pth")
    script = textwrap.dedent("""
        import mlflow, numpy as np
        model = mlflow.pyfunc.load_model("models:/samsar-testset@champion")
        tile = np.random.default_rng(1).gamma(1.0, 1.0, (40, 72)).astype(np.float32)
        out = model.predict(tile)
        print(out.shape, out.dtype, int(out.max()))
    """)
    # MLflow downloads the model under $TMPDIR: kept inside tmp_path.
    env = {**os.environ, "MLFLOW_TRACKING_URI": store.tracking_uri(params), "TMPDIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    last_line = result.stdout.strip().splitlines()[-1]
    assert last_line.startswith("(40, 72) uint8 ")
    assert int(last_line.split()[-1]) < len(CLASS_NAMES)


def test_signature_is_a_tensor_of_any_size_with_the_trained_band_count(adapter_project):
    params = adapter_project
    with training_run(params, "decoder_only", seed=0) as run:
        uri = run.log_adapter_model(params.variant_dir("decoder_only") / "adapter")
    # Logging borrowed MLflow's process-wide URI and gave it back.
    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert mlflow.get_tracking_uri() != store.tracking_uri(params)
    with store.as_process_default(store.tracking_uri(params)):
        info = mlflow.models.get_model_info(uri)
    spec = info.signature.inputs.inputs[0]
    assert spec.shape == (-1, -1) and spec.type == np.dtype("float32")
    assert info.signature.outputs.inputs[0].type == np.dtype("uint8")
    assert info.saved_input_example_info is not None


def test_big_base_checkpoint_is_referenced_not_logged(adapter_project, make_params):
    params = make_params(adapter_project.root, variants=["decoder_only"], tracking={"system_metrics": False, "max_logged_checkpoint_mb": 0})
    artifacts = pyfunc.model_artifacts(params, params.variant_dir("decoder_only") / "adapter")
    assert set(artifacts) == {pyfunc.ADAPTER_KEY}
    small = pyfunc.model_artifacts(adapter_project, params.variant_dir("decoder_only") / "adapter")
    assert Path(small[pyfunc.CHECKPOINT_KEY]) == params.path(params.pretrain.output)
