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


def _data_params(tmp_path, data: dict, preprocess: dict | None = None):
    import yaml

    doc = yaml.safe_load((ROOT / "params.yaml").read_text())
    for key in ("label_offset", "ignore_values"):
        doc["data"].pop(key, None)  # as in params files written before they moved up from data.scene
    doc["data"].update(data)
    doc["preprocess"].update(preprocess or {})
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_scene_label_keys_still_work_and_move_to_data(tmp_path):
    (tmp_path / "s.tif").touch()
    scene = {"image": "s.tif", "label": "s.tif", "label_offset": 1, "ignore_values": [0, -1]}
    params = load_params(_data_params(tmp_path, {"source": "scene", "scene": scene, "inputs": "."}))
    assert params.data.label_offset == 1 and params.data.ignore_values == [0, -1]
    both = {"source": "scene", "scene": scene, "label_offset": 2, "inputs": "."}
    with pytest.raises(ParamsError, match="data.scene.label_offset and data.label_offset are both set; keep only data.label_offset"):
        load_params(_data_params(tmp_path, both))


def test_bands_compose_units_and_nodata_are_validated_at_load(tmp_path):
    params = load_params(_data_params(tmp_path, {"bands": {"VV": 1, "VH": 2}, "nodata": ["nan", -9999]},
                                      {"input_kind": "power", "compose": ["VV", "VH", "VV-VH"]}))
    assert params.preprocess.input_kind == "intensity" and params.preprocess.compose == ["VV", "VH", "VV-VH"]
    assert params.data.nodata[1] == -9999 and params.data.nodata[0] != params.data.nodata[0]  # NaN
    with pytest.raises(ParamsError, match=r"preprocess.compose: 'VV-HH' uses \['HH'\], not among \['VV', 'VH'\]"):
        load_params(_data_params(tmp_path, {"bands": {"VV": 1, "VH": 2}}, {"compose": ["VV", "VH", "VV-HH"]}))
    with pytest.raises(ParamsError, match="preprocess.compose: SAM takes 3 channels"):
        load_params(_data_params(tmp_path, {"bands": [1, 2]}, {"compose": ["B1", "B2"]}))
    with pytest.raises(ParamsError, match=r"preprocess.compose.*cannot read channel 'VV\*VH'"):
        load_params(_data_params(tmp_path, {"bands": {"VV": 1, "VH": 2}}, {"compose": ["VV", "VH", "VV*VH"]}))
    with pytest.raises(ParamsError, match="data.bands.*listed twice"):
        load_params(_data_params(tmp_path, {"bands": [1, 1]}))
    with pytest.raises(ParamsError, match="data.label_grid"):
        load_params(_data_params(tmp_path, {"label_grid": "warp"}))


def test_inputs_must_hold_the_source_files_dvc_tracks(tmp_path):
    (tmp_path / "data_a" / "images").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    folder = {"source": "folder", "folder": {"root": "data_a"}}
    assert load_params(_data_params(tmp_path, {**folder, "inputs": "data_a"})).data.inputs == Path("data_a")
    with pytest.raises(ParamsError, match=r"data.inputs: .*elsewhere does not hold data.folder.root; DVC reruns `prepare`"):
        load_params(_data_params(tmp_path, {**folder, "inputs": "elsewhere"}))
    with pytest.raises(ParamsError, match=r"data.inputs: .*missing does not exist"):
        load_params(_data_params(tmp_path, {**folder, "inputs": "missing"}))
