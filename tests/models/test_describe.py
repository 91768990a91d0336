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
    assert rows["parser"]["encoder_trainable_params"] == 128 + 256


def test_flops_grow_with_the_image_size():
    small = describe_variant("decoder_only", "tiny", 5, 256)["gflops"]
    large = describe_variant("decoder_only", "tiny", 5, 512)["gflops"]
    assert 3.5 * small < large < 6 * small  # about 4x pixels, global attention a bit more
