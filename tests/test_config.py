"""params.yaml -> typed config."""

from pathlib import Path

import pytest

from samsar.config import ParamsError, load_params

ROOT = Path(__file__).resolve().parents[1]


def test_default_params_load_and_resolve_paths_against_their_folder():
    params = load_params(ROOT / "params.yaml")
    assert params.root == ROOT
    assert params.processed_dir == ROOT / "data" / "processed"
    assert params.data.num_classes == len(params.data.classes) == 5
    assert params.metrics_path("parser") == ROOT / "metrics" / "parser.json"


def test_unknown_key_is_an_error_naming_the_file(tmp_path):
    text = (ROOT / "params.yaml").read_text().replace("seed: 0\n", "seed: 0\nsede: 1\n", 1)
    bad = tmp_path / "params.yaml"
    bad.write_text(text)
    with pytest.raises(ParamsError, match=r"(?s)params\.yaml.*sede"):
        load_params(bad)


def test_missing_source_section_is_an_error(tmp_path):
    text = (ROOT / "params.yaml").read_text().replace("source: synthetic", "source: folder", 1)
    bad = tmp_path / "params.yaml"
    bad.write_text(text)
    with pytest.raises(ParamsError, match="data.folder section is missing"):
        load_params(bad)


def test_missing_file_names_it(tmp_path):
    with pytest.raises(ParamsError, match="nope.yaml: params file not found"):
        load_params(tmp_path / "nope.yaml")


def _params_with(tmp_path, old, new):
    text = (ROOT / "params.yaml").read_text()
    assert old in text
    path = tmp_path / "params.yaml"
    path.write_text(text.replace(old, new, 1))
    return path


def test_image_size_off_the_patch_grid_names_the_key_and_the_fix(tmp_path):
    bad = _params_with(tmp_path, "image_size: 256", "image_size: 250")
    with pytest.raises(ParamsError, match=r"(?s)params\.yaml.*model\.image_size.*multiple of SAM's 16 px patch, e\.g\. 240 or 256"):
        load_params(bad)


def test_unknown_variant_is_caught_at_load_with_a_suggestion(tmp_path):
    bad = _params_with(tmp_path, "variants: [decoder_only, parser, lora, adapter, cwsam, parser_lora]",
                       "variants: [decoder_only, cwsamm]")
    known = ["decoder_only", "cwsam", "lora"]
    with pytest.raises(ParamsError, match=r"params\.yaml: variants: unknown variant 'cwsamm'; did you mean 'cwsam'\? "
                                          r"known: cwsam, decoder_only, lora"):
        load_params(bad, known_variants=known)
    assert load_params(bad).variants == ["decoder_only", "cwsamm"]  # the check needs the registry's names
