"""Tiny train -> evaluate -> card -> compare on the generated dataset: every output and metric key."""

import csv
import json

import pytest
import torch

from samsar.evaluation.runner import evaluate_variant
from samsar.models.sam import build_sam
from samsar.reporting.card import write_card
from samsar.reporting.comparison import write_comparison
from samsar.training.loop import train_variant
from samsar.training.pretrain import pretrain, summary_path


def test_pretrain_writes_an_official_sam_state_dict(tiny_project):
    params = tiny_project({
        "pretrain": {"enabled": True, "output": "models/base/base.pth", "max_steps": 2, "batch_size": 2,
                     "synthetic": {"n_scenes": 2, "scene_size": 96, "looks": 8, "seed": 5, "domain": "source"}},
    })
    out = pretrain(params)
    assert out == params.path("models/base/base.pth")
    state = torch.load(out, weights_only=True)
    assert state and all(k.split(".")[0] in {"image_encoder", "prompt_encoder", "mask_decoder"} for k in state)
    sam, base_id = build_sam("tiny", 64, checkpoint=out)  # strict load in the official layout
    assert len(base_id) == 64
    assert torch.equal(sam.image_encoder.patch_embed.proj.weight, state["image_encoder.patch_embed.proj.weight"])
    random_sam, _ = build_sam("tiny", 64, seed=params.seed)
    assert not torch.equal(random_sam.image_encoder.patch_embed.proj.weight, state["image_encoder.patch_embed.proj.weight"])
    summary = json.loads(summary_path(out).read_text())
    assert summary["steps"] == 2 and 0 <= summary["source_holdout_mIoU"] <= 1
    assert summary["head"] == "light"  # the default: a 1x1 class head, dropped with the checkpoint


def test_pretrain_is_a_no_op_with_a_real_checkpoint_or_when_disabled(tiny_project, tmp_path):
    params = tiny_project({"model": {"checkpoint": str(tmp_path / "sam_vit_b.pth")}, "pretrain": {"enabled": True}})
    assert pretrain(params) == tmp_path / "sam_vit_b.pth"
    assert not params.path(params.pretrain.output).exists()
    assert pretrain(tiny_project()) is None  # the fixture disables pretraining


@pytest.mark.slow
def test_train_evaluate_card_compare(tiny_project):
    params = tiny_project({"train": {"epochs": 2}})
    summary = train_variant(params, "decoder_only")
    for key in ("train_seconds", "n_trainable_params", "n_total_params", "best_val_mIoU", "best_epoch",
                "mlflow_run_id", "base_id", "variant"):
        assert key in summary
    assert summary["feature_cache"] is True and summary["steps"] == 6
    out = params.variant_dir("decoder_only")
    assert (out / "adapter" / "adapter.safetensors").is_file()
    adapter_meta = json.loads((out / "adapter" / "adapter.json").read_text())
    assert adapter_meta["class_names"][0] == "building" and adapter_meta["scaling"]["input_kind"] == "intensity"
    with (out / "history.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["0", "1"]
    assert set(rows[0]) == {"epoch", "step", "train_loss", "val_mIoU", "lr", "seconds"}
    assert json.loads((out / "train_summary.json").read_text()) == summary

    metrics = evaluate_variant(params, "decoder_only")
    on_disk = json.loads(params.metrics_path("decoder_only").read_text())
    for key in ("mIoU", "mF1", "OA", "kappa", "FWIoU", "per_class_iou", "n_trainable_params", "train_seconds",
                "majority_mIoU", "ignore_background", "ignore_background_lenient"):
        assert key in on_disk
    assert on_disk["mIoU"] == pytest.approx(metrics["mIoU"])
    assert sum(map(sum, on_disk["confusion_matrix"])) == on_disk["n_pixels"] == 4 * 64 * 64
    reports = params.report_dir("decoder_only")
    for name in ("confusion_counts.png", "confusion_normalized.png", "overlays.png", "training_curves.png"):
        assert (reports / "figures" / name).read_bytes()[:4] == b"\x89PNG"

    card = write_card(params, "decoder_only")
    text = card.read_text()
    for section in ("## Model details", "## Intended use", "## Training data", "## Training procedure",
                    "## Evaluation", "## Caveats and recommendations", "## How to use"):
        assert section in text
    assert "synthetic" in text and "random weights" in text
    html = (reports / "model_card.html").read_text()
    assert "<table>" in html and html.count("data:image/png;base64,") == 4 and 'src="overlays.png"' not in html

    comparison = write_comparison(params).read_text()
    assert "| decoder_only |" in comparison and "majority class" in comparison
    assert "Not evaluated yet: lora" in comparison
