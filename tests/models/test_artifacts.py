"""Adapter artifacts: round trip, base verification, contents, size."""

from __future__ import annotations

import json

import pytest
import torch

from samsar.models.artifacts import ArtifactError, BaseMismatchError, load_adapter, save_adapter

META = {"class_names": ["a", "b", "c"], "colors": [[0, 0, 0], [255, 0, 0], [0, 255, 0]],
        "scaling": {"lo": -25.0, "hi": 5.0}}


def perturbed(seg):
    """Move every trained tensor so a round trip that dropped one would show."""
    with torch.no_grad():
        for p in seg.named_trainable_parameters().values():
            p.add_(0.01 * torch.randn_like(p))
    return seg


@pytest.mark.parametrize("variant", ["parser", "cwsam", "lora"])
def test_round_trip_on_a_checkpoint_base(variant, tiny_segmenter, tiny_checkpoint, tmp_path, images):
    seg = perturbed(tiny_segmenter(variant, checkpoint=tiny_checkpoint))
    out = save_adapter(seg, tmp_path / "adapter", META)
    assert sorted(p.name for p in out.iterdir()) == ["adapter.json", "adapter.safetensors"]
    loaded, meta = load_adapter(out)
    assert meta["class_names"] == META["class_names"] and meta["scaling"] == META["scaling"]
    assert meta["method"] == variant and meta["backbone"] == "tiny" and meta["image_size"] == 256
    assert meta["base_id"] == seg.base_id and len(seg.base_id) == 64
    assert meta["samsar_version"]
    with torch.no_grad():
        assert torch.equal(loaded(images), seg(images))


def test_round_trip_on_a_random_init_base(tiny_segmenter, tmp_path, images):
    seg = perturbed(tiny_segmenter("decoder_only", seed=5))
    loaded, meta = load_adapter(save_adapter(seg, tmp_path / "a", META))
    assert meta["base_id"] == "random-init:5"
    with torch.no_grad():
        assert torch.equal(loaded(images), seg(images))


def test_only_trained_tensors_are_stored(tiny_segmenter, tmp_path):
    from safetensors.torch import load_file

    seg = tiny_segmenter("parser")
    out = save_adapter(seg, tmp_path / "a", META)
    stored = load_file(out / "adapter.safetensors")
    assert stored.keys() == seg.named_trainable_parameters().keys()
    assert not any(n.endswith((".u", ".vh")) or "image_encoder.blocks" in n for n in stored)


def test_parser_adds_a_few_kilobytes_to_the_decoder(tiny_segmenter, tmp_path):
    sizes = {v: (save_adapter(tiny_segmenter(v), tmp_path / v, META) / "adapter.safetensors").stat().st_size
             for v in ("decoder_only", "parser")}
    extra = sizes["parser"] - sizes["decoder_only"]
    assert (128 + 256) * 4 <= extra < (128 + 256) * 4 + 512  # the coefficients + their header entries


def test_another_base_checkpoint_is_refused(tiny_segmenter, tiny_checkpoint, tmp_path):
    out = save_adapter(tiny_segmenter("parser", checkpoint=tiny_checkpoint), tmp_path / "a", META)
    state = torch.load(tiny_checkpoint, weights_only=True)
    state["image_encoder.neck.0.weight"] += 1e-3
    other = tmp_path / "other.pth"
    torch.save(state, other)
    with pytest.raises(BaseMismatchError, match="other.pth.*differs"):
        load_adapter(out, checkpoint=other)
    with pytest.raises(BaseMismatchError, match="randomly initialised"):
        load_adapter(save_adapter(tiny_segmenter("parser"), tmp_path / "b", META), checkpoint=tiny_checkpoint)


def test_missing_recorded_checkpoint_asks_for_one(tiny_segmenter, tiny_checkpoint, tmp_path):
    out = save_adapter(tiny_segmenter("parser", checkpoint=tiny_checkpoint), tmp_path / "a", META)
    config = json.loads((out / "adapter.json").read_text())
    config["base_checkpoint"] = str(tmp_path / "moved.pth")
    (out / "adapter.json").write_text(json.dumps(config))
    with pytest.raises(FileNotFoundError, match="moved.pth"):
        load_adapter(out)
    assert load_adapter(out, checkpoint=tiny_checkpoint)[1]["method"] == "parser"


def test_tensors_of_another_method_are_refused(tiny_segmenter, tmp_path):
    out = save_adapter(tiny_segmenter("parser"), tmp_path / "a", META)
    lora = save_adapter(tiny_segmenter("lora"), tmp_path / "b", META)
    (out / "adapter.safetensors").write_bytes((lora / "adapter.safetensors").read_bytes())
    with pytest.raises(ArtifactError, match="missing.*singular_values"):
        load_adapter(out)


def test_overwrite_is_atomic_and_meta_cannot_shadow_model_fields(tiny_segmenter, tmp_path):
    seg = tiny_segmenter("decoder_only")
    target = tmp_path / "a"
    save_adapter(seg, target, META)
    save_adapter(seg, target, {**META, "note": "second"})
    assert json.loads((target / "adapter.json").read_text())["note"] == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]  # no temporary leftovers
    with pytest.raises(ArtifactError, match="backbone"):
        save_adapter(seg, tmp_path / "b", {"backbone": "vit_h"})
    seg.merge()
    with pytest.raises(ArtifactError, match="before merge"):
        save_adapter(seg, tmp_path / "c", META)


def test_artifact_files_are_readable_by_other_users_of_a_shared_store(tiny_segmenter, tmp_path):
    import os
    import stat

    previous = os.umask(0o022)
    try:
        out = save_adapter(tiny_segmenter("decoder_only"), tmp_path / "a", META)
    finally:
        os.umask(previous)
    for name in ("adapter.safetensors", "adapter.json"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o644, name
