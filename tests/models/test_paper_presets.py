"""The paper presets in examples/ load and carry the papers' settings."""

from __future__ import annotations

from pathlib import Path

from samsar.config import load_params
from samsar.models.variants import VARIANTS

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def preset(name: str):
    return load_params(EXAMPLES / name, known_variants=VARIANTS, check_inputs=False)


def test_cwsam_fusar_map_preset_is_the_reference_setup():
    p = preset("params-cwsam-fusar-map.yaml")
    assert (p.data.source, p.data.fusar_map.version) == ("fusar_map", 1)
    assert p.data.class_names == ["building", "vegetation", "water", "road", "background"]
    assert [c.color for c in p.data.classes][-1] == (0, 0, 0) and p.data.background == "background"
    assert (p.model.backbone, p.model.image_size, p.preprocess.tile_size) == ("vit_b", 1024, 1024)
    assert p.variants == ["cwsam"] and p.variant_options.cwsam.mode == "faithful"
    assert p.variant_options.cwsam.low_freq_ratio == 0.25 and p.variant_options.cwsam.reduction == 4
    t = p.train
    assert (t.lr, t.weight_decay, t.min_lr, t.epochs, t.max_steps, t.warmup_steps) == (2e-4, 0.01, 1e-7, 200, None, 0)
    assert t.class_weights == [1.5, 1.0, 0.5, 1.9, 0.1] and t.dice_weight == 0
    assert not t.augment and t.batch_size == 1 and t.early_stopping_patience >= t.epochs
    assert t.grad_accum == 1 and Path(p.model.checkpoint).name == "sam_vit_b_01ec64.pth"  # Meta's ViT-B weights


def test_parser_paper_preset_is_the_papers_protocol():
    p = preset("params-parser-paper.yaml")
    assert p.data.source == "folder" and p.data.class_names == ["background", "ship"]
    assert (p.model.backbone, p.model.image_size) == ("vit_b", 1024)
    assert p.variants == ["decoder_only", "parser", "lora"]
    o = p.variant_options
    assert o.head == "box_prompt" and (o.box_prompt.boxes, o.box_prompt.jitter) == ("per_image", 20)
    assert (o.lora.rank, o.lora.alpha, o.lora.targets) == (4, 4.0, ["q", "v"])
    assert (o.adapter.hidden, o.adapter.placement, o.adapter.blocks) == (19, "mlp", None)
    t = p.train
    assert (t.batch_size, t.epochs, t.max_steps, t.weight_decay) == (1, 10, None, 0.0)  # Adam
    assert t.min_lr == t.lr == o.parser.lr and t.warmup_steps == 0  # one constant rate
    assert t.class_weights == "none" and t.dice_weight == 1.0 and not t.augment
