"""SAM building: backbones, official-format checkpoints, other input sizes, hashing."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest
import torch

from samsar.models.sam import BACKBONES, CheckpointError, build_sam, construct_sam, file_sha256, import_sam_module, import_sam_modeling


def test_modeling_imports_without_torchvision():
    code = "import samsar.models.sam as s; print(s.import_sam_modeling().Sam.__name__, s.import_sam_module('build_sam').__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["Sam", "segment_anything.build_sam"]


@pytest.mark.parametrize("backbone", ["vit_b", "vit_l", "vit_h"])
def test_official_backbones_match_segment_anything_builders(backbone):
    sam_model_registry = import_sam_module("build_sam").sam_model_registry
    with torch.device("meta"):
        official = sam_model_registry[backbone]()
    ours, base_id = build_sam(backbone, 1024, device="meta")
    assert base_id == "random-init:0"
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in official.state_dict().items()}


def test_tiny_is_about_one_million_encoder_parameters():
    sam, _ = build_sam("tiny", 256)
    n = sum(p.numel() for p in sam.image_encoder.parameters())
    assert 0.8e6 < n < 1.5e6
    assert sam.mask_decoder.transformer_dim == 256
    assert sam.image_encoder.blocks[-1].window_size == 0  # global attention on the last block
    assert sam.image_encoder.blocks[0].window_size == BACKBONES["tiny"].window_size


def test_random_init_is_a_function_of_the_seed():
    a, _ = build_sam("tiny", 256, seed=3)
    b, _ = build_sam("tiny", 256, seed=3)
    c, _ = build_sam("tiny", 256, seed=4)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.mask_decoder.mask_tokens.weight, c.mask_decoder.mask_tokens.weight)


@pytest.fixture(scope="module")
def vit_b_checkpoint(tmp_path_factory):
    """An official-format ViT-B state dict, built with segment_anything's own builder."""
    build_sam_vit_b = import_sam_module("build_sam").build_sam_vit_b
    torch.manual_seed(0)
    sam = build_sam_vit_b()
    with torch.no_grad():  # SAM zero-initialises position tables; make them observable
        for name, p in sam.named_parameters():
            if "pos" in name:
                p.normal_(0, 0.02)
    path = tmp_path_factory.mktemp("vit_b") / "sam_vit_b_01ec64.pth"
    state = sam.state_dict()
    torch.save(state, path)
    return path, state


def test_official_checkpoint_loads_at_1024_unchanged(vit_b_checkpoint):
    path, state = vit_b_checkpoint
    sam, base_id = build_sam("vit_b", 1024, path)
    assert base_id == hashlib.sha256(path.read_bytes()).hexdigest()
    loaded = sam.state_dict()
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], state[k]) for k in state)


def test_official_checkpoint_loads_at_512_with_interpolated_positions(vit_b_checkpoint):
    path, state = vit_b_checkpoint
    sam, _ = build_sam("vit_b", 512, path)
    loaded = sam.state_dict()
    assert loaded["image_encoder.pos_embed"].shape == (1, 32, 32, 768)
    for i in BACKBONES["vit_b"].global_attn_indexes:  # global attention tables follow the grid
        assert loaded[f"image_encoder.blocks.{i}.attn.rel_pos_h"].shape == (63, 64)
    assert loaded["image_encoder.blocks.0.attn.rel_pos_h"].shape == (27, 64)  # 14x14 windows: unchanged
    assert torch.equal(loaded["image_encoder.blocks.0.attn.rel_pos_h"], state["image_encoder.blocks.0.attn.rel_pos_h"])
    unchanged = [k for k in state if "pos" not in k]
    assert all(torch.equal(loaded[k], state[k]) for k in unchanged)
    assert tuple(sam.prompt_encoder.image_embedding_size) == (32, 32)
    assert tuple(sam.prompt_encoder.input_image_size) == (512, 512)


def test_interpolation_of_a_constant_table_is_constant(tiny_checkpoint, tmp_path):
    state = torch.load(tiny_checkpoint, weights_only=True)
    state["image_encoder.pos_embed"] = torch.full_like(state["image_encoder.pos_embed"], 0.5)
    state["image_encoder.blocks.1.attn.rel_pos_w"] = torch.full_like(state["image_encoder.blocks.1.attn.rel_pos_w"], -1.0)
    path = tmp_path / "const.pth"
    torch.save(state, path)
    sam, _ = build_sam("tiny", 384, path)
    assert torch.allclose(sam.image_encoder.pos_embed, torch.tensor(0.5))
    assert sam.image_encoder.blocks[1].attn.rel_pos_w.shape == (2 * 24 - 1, 32)
    assert torch.allclose(sam.image_encoder.blocks[1].attn.rel_pos_w, torch.tensor(-1.0))


def test_tiny_checkpoint_loads_at_its_size_and_runs_at_another(tiny_checkpoint):
    sam256, base_id = build_sam("tiny", 256, tiny_checkpoint)
    assert base_id == file_sha256(tiny_checkpoint)
    saved = torch.load(tiny_checkpoint, weights_only=True)
    assert all(torch.equal(sam256.state_dict()[k], saved[k]) for k in saved)
    sam512, _ = build_sam("tiny", 512, tiny_checkpoint)
    x = torch.randn(1, 3, 512, 512)
    with torch.no_grad():
        assert sam512.image_encoder(x).shape == (1, 256, 32, 32)


def test_checkpoint_of_another_backbone_is_refused(tiny_checkpoint):
    with pytest.raises(CheckpointError, match="tiny encoder.*not vit_b"):
        build_sam("vit_b", 1024, tiny_checkpoint, device="meta")


def test_missing_or_foreign_checkpoint_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        build_sam("tiny", 256, tmp_path / "nope.pth")
    foreign = tmp_path / "foreign.pth"
    torch.save({"weight": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match="foreign.pth.*official key format"):
        build_sam("tiny", 256, foreign)


def test_image_size_must_be_a_patch_multiple():
    with pytest.raises(ValueError, match="multiple of the patch size"):
        construct_sam("tiny", 250)


def test_modeling_module_is_segment_anything():
    assert import_sam_modeling().__name__ == "segment_anything.modeling"
