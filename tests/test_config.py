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
