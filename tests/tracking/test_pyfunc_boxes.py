"""The pyfunc of a box_prompt adapter: boxes as the `boxes` param, logged with a signature that declares it."""

import mlflow
import numpy as np
import pytest

from samsar.data.scaling import SarScaler
from samsar.models.artifacts import save_adapter
from samsar.models.variants import build_segmenter
from samsar.tracking import pyfunc, store
from samsar.tracking.runs import training_run

SHIP_CLASSES = [{"name": "background", "color": [0, 0, 0]}, {"name": "ship", "color": [0, 255, 0]}]


@pytest.fixture
def box_project(tmp_path, make_params):
    params = make_params(tmp_path, variants=["decoder_only-box"], data={"name": "ships", "classes": SHIP_CLASSES},
                         model={"image_size": 64})
    segmenter = build_segmenter("decoder_only-box", backbone="tiny", image_size=64, num_classes=2)
    scaler = SarScaler().fit([np.random.default_rng(0).gamma(1.0, 1.0, (64, 64))])
    meta = {"class_names": ["background", "ship"], "class_colors": [[0, 0, 0], [0, 255, 0]], "scaling": scaler.to_dict()}
    save_adapter(segmenter, params.variant_dir("decoder_only-box") / "adapter", meta)
    return params


def test_box_pyfunc_needs_boxes_and_logs_them_in_its_signature(box_project):
    adapter = box_project.variant_dir("decoder_only-box") / "adapter"
    model = pyfunc.AdapterModel()
    model.load_context(mlflow.pyfunc.PythonModelContext(artifacts=pyfunc.model_artifacts(box_project, adapter), model_config={}))
    tile = pyfunc.example_tile(size=80)
    with pytest.raises(ValueError, match="box_prompt head; pass its box prompts"):
        model.predict(None, tile)
    classes = model.predict(None, tile, {"boxes": [70.0, 70.0, 79.0, 79.0]})
    assert classes.shape == (80, 80) and (classes[:, :16] == 0).all()  # only the last window holds the box
    with training_run(box_project, "decoder_only-box", seed=0) as run:
        uri = run.log_adapter_model(adapter)
    with store.as_process_default(store.tracking_uri(box_project)):
        info = mlflow.models.get_model_info(uri)
        loaded = mlflow.pyfunc.load_model(uri)
        served = loaded.predict(tile, params={"boxes": [70.0, 70.0, 79.0, 79.0]})
    assert [p.name for p in info.signature.params.params] == ["boxes"]
    assert np.array_equal(served, classes)
