"""`samsar models describe`: counts, artifact sizes and FLOPs per variant."""

from __future__ import annotations

import pytest
from safetensors.torch import save_file

from samsar.models.describe import describe, describe_variant, safetensors_nbytes
from samsar.models.variants import VARIANTS


@pytest.mark.parametrize("variant", ["parser", "cwsam"])
def test_artifact_size_is_the_size_safetensors_writes(variant, tiny_segmenter, tmp_path):
    seg = tiny_segmenter(variant)
    tensors = {n: t.contiguous() for n, t in seg.trainable_state_dict().items()}
    save_file(tensors, tmp_path / "x.safetensors")
    assert safetensors_nbytes(tensors) == (tmp_path / "x.safetensors").stat().st_size
    row = describe_variant(variant, "tiny", 3, 256)
    assert row["artifact_bytes"] == (tmp_path / "x.safetensors").stat().st_size
    assert row["trainable_params"] == sum(t.numel() for t in tensors.values())


def test_describe_lists_every_variant_with_plausible_costs(capsys):
    rows = {r["variant"]: r for r in describe("tiny", 5, 256)}
    assert rows.keys() == VARIANTS.keys()
    printed = capsys.readouterr().out
    assert all(v in printed for v in VARIANTS)
    base = rows["decoder_only"]
    assert base["gflops"] > 0
    # Factorised PARSER convolutions add V^T (r x in) + U (out x r) - W (out x in) per token:
    # neck.0 128 -> 256 (r = 128): +128 * 128; neck.2 (r = 256): the 1x1 U, +256 * 256.
    extra = 2 * 16 * 16 * (128 * 128 + 256 * 256) / 1e9
    assert rows["parser"]["gflops"] == pytest.approx(base["gflops"] + extra, rel=1e-6)
    assert rows["adapter"]["gflops"] > base["gflops"]
    assert rows["full"]["trainable_params"] > rows["cwsam"]["trainable_params"] > base["trainable_params"]
    assert rows["parser"]["method_params"] == 128 + 256


def test_flops_grow_with_the_image_size():
    small = describe_variant("decoder_only", "tiny", 5, 256)["gflops"]
    large = describe_variant("decoder_only", "tiny", 5, 512)["gflops"]
    assert 3.5 * small < large < 6 * small  # about 4x pixels, global attention a bit more


def table_rows(printed: str) -> dict[str, list[str]]:
    """``variant -> cells`` of the rich table in ``printed``."""
    rows = {}
    for line in printed.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if cells and cells[0] in VARIANTS:
            rows[cells[0]] = cells
    return rows


def test_parser_preset_prints_the_papers_columns_in_k_1024(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from samsar.cli import app

    for var in ("PREFECT_HOME", "MPLCONFIGDIR"):  # the CLI sets them by default; restored after the test
        monkeypatch.setenv(var, str(tmp_path / var))
    result = CliRunner().invoke(app, ["models", "describe", "--params", "examples/params-parser-paper.yaml",
                                      "--image-size", "256"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert "K = 1024" in result.output and "vit_b, box_prompt head, 2 classes" in result.output
    rows = table_rows(result.output)
    # columns: variant, base, added by method, base + method, paper, ...
    assert rows["decoder_only"][1:5] == ["3,963.2", "+0.0", "3,963.2", "3,963.2"]  # 4,058,340 / 1024
    assert rows["parser"][2] == "+0.5" == rows["parser"][4]                        # 512
    assert rows["lora"][2] == "+144.0" == rows["lora"][4]                          # 147,456
    assert (rows["adapter"][2], rows["adapter"][4]) == ("+351.2", "+351.5")        # nearest size; see the preset
    assert rows["decoder_only"][5] == "3,506,304"  # what actually trains: no IoU head, no unused hypernetworks


def test_describe_counts_the_whole_sam_decoder_as_the_base():
    row = describe_variant("parser", "tiny", 3, 256)
    assert row["method_params"] == 128 + 256 and "encoder_trainable_params" not in row  # one name per number
    assert row["base_plus_method_params"] == row["base_params"] + row["method_params"]
    assert row["base_params"] > row["trainable_params"] - row["method_params"]  # unused decoder parts counted
