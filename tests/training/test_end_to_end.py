"""Tiny train (two seeds) -> evaluate -> card -> compare on the generated dataset: every output and metric key."""

import csv
import json

import numpy as np
import pytest
import torch

from samsar.evaluation.runner import evaluate_variant, seeds_path, tiles_path
from samsar.models.sam import build_sam
from samsar.reporting.card import write_card
from samsar.reporting.comparison import write_comparison
from samsar.training.loop import train_variant
from samsar.training.pretrain import pretrain, summary_path
from samsar.uncertainty import TileConfusions, miou


def test_pretrain_writes_an_official_sam_state_dict(tiny_project, capsys):
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
    assert summary["steps"] == 2 and summary["cut_short"] is False and 0 <= summary["source_holdout_mIoU"] <= 1
    assert summary["head"] == "light"  # the default: a 1x1 class head, dropped with the checkpoint
    assert "pretrain: step 2/2 (100 %)" in capsys.readouterr().err  # plain progress off a terminal
    assert json.loads((out.parent / "base_record.json").read_text())["base"] == "pretrained"


def test_pretrain_is_a_no_op_with_a_real_checkpoint_or_when_disabled(tiny_project, tmp_path):
    (tmp_path / "sam_vit_b.pth").write_bytes(b"")  # params check that the checkpoint exists; pretrain only records it
    params = tiny_project({"model": {"checkpoint": str(tmp_path / "sam_vit_b.pth")}, "pretrain": {"enabled": True}})
    assert pretrain(params) == tmp_path / "sam_vit_b.pth"
    assert not params.path(params.pretrain.output).exists()
    assert pretrain(tiny_project()) is None  # the fixture disables pretraining


@pytest.mark.slow
def test_train_evaluate_card_compare_over_seeds(tiny_project):
    params = tiny_project({"train": {"epochs": 2, "seeds": [0, 1]}})
    summary = train_variant(params, "decoder_only")
    for key in ("train_seconds", "n_trainable_params", "n_total_params", "best_val_mIoU", "best_val_mIoU_std",
                "mlflow_run_id", "base_id", "variant", "seeds", "selected_seed", "runs", "cut_short"):
        assert key in summary
    assert summary["seeds"] == [0, 1] and summary["steps"] == [6, 6] and summary["cut_short"] is False
    runs = {r["seed"]: r for r in summary["runs"]}
    assert all(r["feature_cache"] and r["stop_reason"] == "epochs" and r["step_budget"] == 6 for r in runs.values())
    # validation selects the variant's adapter: the seed with the best validation mIoU
    best = max(runs.values(), key=lambda r: r["best_val_mIoU"])
    assert summary["selected_seed"] == best["seed"]
    out = params.variant_dir("decoder_only")
    selected = out / "seeds" / str(best["seed"]) / "adapter" / "adapter.safetensors"
    assert (out / "adapter" / "adapter.safetensors").read_bytes() == selected.read_bytes()
    seed_weights = [(out / "seeds" / str(s) / "adapter" / "adapter.safetensors").read_bytes() for s in (0, 1)]
    assert seed_weights[0] != seed_weights[1]  # the seed changes the run
    adapter_meta = json.loads((out / "adapter" / "adapter.json").read_text())
    assert adapter_meta["class_names"][0] == "building" and adapter_meta["scaling"]["input_kind"] == "intensity"
    with (out / "history.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["seed"], r["epoch"]) for r in rows] == [("0", "0"), ("0", "1"), ("1", "0"), ("1", "1")]
    assert set(rows[0]) == {"seed", "epoch", "step", "train_loss", "val_mIoU", "lr", "seconds"}
    assert json.loads((out / "train_summary.json").read_text()) == summary

    metrics = evaluate_variant(params, "decoder_only")
    on_disk = json.loads(params.metrics_path("decoder_only").read_text())
    for key in ("mIoU", "mF1", "OA", "kappa", "FWIoU", "per_class_iou", "n_trainable_params", "train_seconds",
                "majority_mIoU", "ignore_background", "ignore_background_lenient", "seeds", "val_mIoU"):
        assert key in on_disk
    per_seed = json.loads(seeds_path(params, "decoder_only").read_text())["seeds"]
    assert [s["seed"] for s in per_seed] == on_disk["seeds"] == [0, 1]
    for key in ("mIoU", "mF1", "OA", "kappa", "FWIoU"):
        values = [s[key] for s in per_seed]
        assert on_disk[key] == pytest.approx(np.mean(values))
        assert on_disk[f"{key}_std"] == pytest.approx(np.std(values, ddof=1))
    assert on_disk["mIoU"] == pytest.approx(metrics["mIoU"])
    assert sum(map(sum, on_disk["confusion_matrix"])) == 2 * on_disk["n_pixels"] == 2 * 4 * 64 * 64
    tiles = TileConfusions.load(tiles_path(params, "decoder_only"))
    assert tiles.seeds == (0, 1) and len(tiles.tile_ids) == on_disk["n_test_tiles"] == 4
    assert tiles.confusion.sum(axis=(1, 2, 3)).tolist() == [4 * 64 * 64] * 2
    assert miou(tiles.confusion[1].sum(axis=0)) == pytest.approx(per_seed[1]["mIoU"])
    reports = params.report_dir("decoder_only")
    for name in ("confusion_counts.png", "confusion_normalized.png", "overlays.png", "training_curves.png"):
        assert (reports / "figures" / name).read_bytes()[:4] == b"\x89PNG"

    card = write_card(params, "decoder_only")
    text = card.read_text()
    for section in ("## Model details", "## Intended use", "## Training data", "## Training procedure",
                    "## Evaluation", "## Caveats and recommendations", "## How to use"):
        assert section in text
    assert "synthetic" in text and "random weights" in text
    assert f"{on_disk['mIoU']:.3f} ± {on_disk['mIoU_std']:.3f}" in text and "within noise" in text
    assert "mF1 (reference)" in text and f"| {on_disk['mF1_reference']:.3f} |" in text  # per-seed mean, labelled
    html = (reports / "model_card.html").read_text()
    assert "<table>" in html and html.count("data:image/png;base64,") == 4 and 'src="overlays.png"' not in html

    comparison = write_comparison(params).read_text()
    assert "| decoder_only |" in comparison and "majority class" in comparison
    assert f"{on_disk['mIoU']:.3f} ± {on_disk['mIoU_std']:.3f}" in comparison
    assert "Not evaluated yet: lora" in comparison
    assert "mF1 (reference)" in comparison and "no true positive" in comparison
