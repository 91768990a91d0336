"""Variant names with a head suffix (`<method>-box`): parsing, building, saving and params validation."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from samsar.config import BoxPromptOptions, ParamsError, VariantOptions, load_params
from samsar.models.artifacts import load_adapter, save_adapter
from samsar.models.variants import VARIANTS, parse_variant

ROOT = Path(__file__).resolve().parents[2]


def test_parse_variant_resolves_the_head():
    assert parse_variant("parser-box") == ("parser", "box_prompt")
    assert parse_variant("parser_lora-box") == ("parser_lora", "box_prompt")
    assert parse_variant("lora") == ("lora", "classwise")
    assert parse_variant("lora", VariantOptions(head="box_prompt")) == ("lora", "box_prompt")
    for bad in ("parser-boxes", "parsr-box", "decoder-only"):
        with pytest.raises(ValueError):
            parse_variant(bad)


def test_box_variant_builds_the_method_with_the_box_head_and_reloads_the_same(tiny_segmenter, tmp_path, images):
    options = VariantOptions(box_prompt=BoxPromptOptions(boxes="per_image", jitter=7))
    seg = tiny_segmenter("lora-box", num_classes=2, options=options)
    assert seg.takes_boxes and seg.spec.variant == "lora" and type(seg.method) is VARIANTS["lora"]
    assert seg.spec.options.box_prompt.boxes == "per_image"
    assert not tiny_segmenter("lora", num_classes=2, options=options).takes_boxes  # plain name: options.head
    save_adapter(seg, tmp_path / "adapter", {"class_names": ["background", "ship"]})
    loaded, meta = load_adapter(tmp_path / "adapter")
    assert loaded.takes_boxes and meta["method"] == "lora" and meta["variant_options"]["head"] == "box_prompt"
    assert loaded.spec.options == seg.spec.options


def _hrsid_params(tmp_path, **changes) -> Path:
    raw = yaml.safe_load((ROOT / "examples" / "params-hrsid-mini.yaml").read_text())
    raw.update(changes)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_example_lists_both_heads_and_loads():
    params = load_params(ROOT / "examples" / "params-hrsid-mini.yaml", known_variants=VARIANTS, check_inputs=False)
    boxed = [v for v in params.variants if v.endswith("-box")]
    assert boxed and len(boxed) < len(params.variants)
    assert params.variant_options.box_prompt.jitter == 20


def test_unknown_suffix_or_method_is_the_did_you_mean_error(tmp_path):
    path = _hrsid_params(tmp_path, variants=["parser-bx"])
    with pytest.raises(ParamsError, match=r"variants: unknown variant 'parser-bx'; did you mean 'parser-box'\?"):
        load_params(path, known_variants=VARIANTS, check_inputs=False)
    path = _hrsid_params(tmp_path, variants=["parsr-box"])
    with pytest.raises(ParamsError, match=r"unknown variant 'parsr-box'; did you mean 'parser-box'\?"):
        load_params(path, known_variants=VARIANTS, check_inputs=False)


def test_box_head_on_more_than_two_classes_is_a_params_error_naming_variants(tmp_path):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["variants"] = ["decoder_only", "parser-box"]
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ParamsError, match=r"params\.yaml: variants: \['parser-box'\] use the box_prompt head.*2 data\.classes") as err:
        load_params(path, known_variants=VARIANTS, check_inputs=False)
    assert "\n" not in str(err.value)


def test_cli_and_params_agree_the_box_head_needs_the_background_first(tmp_path):
    from samsar.cli import _check_variant
    from samsar.config import box_head_fits

    assert box_head_fits(["background", "ship"], "background") and box_head_fits(["sea", "ship"], None)
    assert not box_head_fits(["ship", "background"], "background")
    assert not box_head_fits(["background", "ship", "oil"], "background")
    raw = yaml.safe_load((ROOT / "examples" / "params-hrsid-mini.yaml").read_text())
    raw["data"]["classes"] = list(reversed(raw["data"]["classes"]))  # background last
    path = _hrsid_params(tmp_path, data=raw["data"], variants=["parser-box"])
    with pytest.raises(ParamsError, match="background first"):
        load_params(path, known_variants=VARIANTS, check_inputs=False)
    path = _hrsid_params(tmp_path, data=raw["data"], variants=["parser"])
    params = load_params(path, known_variants=VARIANTS, check_inputs=False)
    with pytest.raises(ParamsError, match=r"--variant: 'parser-box' uses the box_prompt head.*background first"):
        _check_variant(params, "parser-box")
    _check_variant(params, "parser")
