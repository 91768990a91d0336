"""The model card and its summary name the head: a box_prompt variant's card says it needs box prompts."""

import importlib.util
import json
import sys
from pathlib import Path

import yaml


def _box_training():
    name = "reporting_box_training"
    if name not in sys.modules:
        path = Path(__file__).parents[1] / "training" / "test_box_training.py"
        spec = importlib.util.spec_from_file_location(name, path)
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


def test_box_variant_card_states_its_prompts_and_registered_model(tmp_path):
    from samsar.config import load_params
    from samsar.data.prepare import prepare
    from samsar.data.preprocess import preprocess
    from samsar.evaluation.runner import evaluate_variant
    from samsar.reporting.card import card_summary, render_markdown
    from samsar.tracking.registry import version_description
    from samsar.training.loop import train_variant

    raw = {**_box_training().TWO_CLASSES, "variants": ["decoder_only-box"]}
    raw["train"] = {**raw["train"], "epochs": 1, "max_steps": 1, "augment": False}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    params = load_params(tmp_path / "params.yaml")
    prepare(params)
    preprocess(params)
    train_variant(params, "decoder_only-box")
    evaluate_variant(params, "decoder_only-box")

    box = render_markdown(params, "decoder_only-box")
    assert "classwise head" not in box and "no prompts" not in box
    assert "needs box prompts at prediction (`samsar predict --boxes`); test scores use exact ground-truth boxes" in box
    assert "models:/samsar-tiny-buildings-box@champion" in box and "--boxes boxes.geojson" in box
    assert card_summary(params, "decoder_only-box").splitlines()[1].startswith("Head: box_prompt (")

    # the same summary (the registered version's description) of a classwise variant says so
    metrics = json.loads(params.metrics_path("decoder_only-box").read_text())
    assert version_description(params, "decoder_only", metrics).splitlines()[1] == (
        "Head: classwise (one logit map per class, no prompts).")
