"""The `samsar` command lists one subcommand per pipeline stage."""

import subprocess
import sys

STAGES = ["prepare", "preprocess", "validate", "pretrain", "train", "evaluate", "card", "compare", "register", "promote", "predict", "ui"]


def test_help_lists_every_stage():
    out = subprocess.run([sys.executable, "-m", "samsar.cli", "--help"], capture_output=True, text=True, check=True).stdout
    for stage in STAGES:
        assert stage in out, f"`samsar --help` does not list {stage}"


def test_every_stage_accepts_a_params_file():
    for stage in ["prepare", "preprocess", "validate", "pretrain", "train", "evaluate", "card", "compare", "register"]:
        out = subprocess.run([sys.executable, "-m", "samsar.cli", stage, "--help"], capture_output=True, text=True, check=True).stdout
        assert "--params" in out, stage


def test_bad_params_file_exits_2_with_its_name(tmp_path):
    res = subprocess.run([sys.executable, "-m", "samsar.cli", "prepare", "--params", str(tmp_path / "x.yaml")], capture_output=True, text=True)
    assert res.returncode == 2
    assert "x.yaml" in res.stderr


def test_variant_typo_in_params_fails_every_stage_at_load(tmp_path):
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "params.yaml").read_text()
    bad = tmp_path / "params.yaml"
    bad.write_text(text.replace("parser_lora]", "parser_lora, cwsamm]", 1))
    res = subprocess.run([sys.executable, "-m", "samsar.cli", "compare", "--params", str(bad)], capture_output=True, text=True)
    assert res.returncode == 2
    assert "variants: unknown variant 'cwsamm'; did you mean 'cwsam'?" in res.stderr
    assert "Traceback" not in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]
