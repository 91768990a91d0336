"""Cached trunk features: exact augmentation replay, keys, and the same training result as uncached."""

import csv
import json

import pytest
import torch
import yaml

from samsar.config import load_params
from samsar.models.variants import build_segmenter
from samsar.training.augment import augment_batch
from samsar.training.feature_cache import CachedFeatureDataset, FeatureCache, dihedral, draw_dihedral_codes, tile_key

SIZE = 64


def _tiles(n: int, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    return [{"image": torch.rand(3, SIZE, SIZE, generator=g), "label": torch.randint(0, 3, (SIZE, SIZE), generator=g), "tile_id": f"t{i}"}
            for i in range(n)]


def _segmenter(variant: str = "decoder_only", seed: int = 0):
    return build_segmenter(variant, backbone="tiny", image_size=SIZE, num_classes=3, seed=seed)


def _collate(dataset, indices):
    items = [dataset[i] for i in indices]
    return {"index": torch.tensor([it["index"] for it in items]), "key": [it["key"] for it in items],
            "label": torch.stack([it["label"] for it in items]), "tile_id": [it["tile_id"] for it in items]}


def test_dihedral_codes_replay_augment_batch_exactly():
    images, labels = torch.rand(6, 3, 8, 8), torch.randint(0, 5, (6, 8, 8))
    expected_images, expected_labels = augment_batch(images, labels, torch.Generator().manual_seed(7))
    codes = draw_dihedral_codes(6, torch.Generator().manual_seed(7))
    assert len(set(codes)) > 1
    torch.testing.assert_close(torch.stack([dihedral(x, c) for x, c in zip(images, codes)]), expected_images, rtol=0, atol=0)
    torch.testing.assert_close(torch.stack([dihedral(y, c) for y, c in zip(labels, codes)]), expected_labels, rtol=0, atol=0)


@pytest.mark.parametrize("variant", ["decoder_only", "parser"])
def test_logits_from_cached_features_match_the_full_forward(tmp_path, variant):
    segmenter = _segmenter(variant).eval()
    tiles = _tiles(4)
    dataset = CachedFeatureDataset(tiles, segmenter, FeatureCache.for_segmenter(tmp_path, segmenter), augment=True)
    generator = torch.Generator().manual_seed(3)
    features, labels = dataset.batch_features(_collate(dataset, [0, 1, 2, 3]), generator)
    codes = draw_dihedral_codes(4, torch.Generator().manual_seed(3))
    images = torch.stack([dihedral(t["image"], c) for t, c in zip(tiles, codes)])
    assert features.dtype == torch.float16
    torch.testing.assert_close(labels, torch.stack([dihedral(t["label"], c) for t, c in zip(tiles, codes)]))
    with torch.no_grad():
        cached, direct = segmenter.forward_from_trunk(features), segmenter(images)
    torch.testing.assert_close(cached, direct, rtol=1e-2, atol=1e-2)
    assert (cached.argmax(1) == direct.argmax(1)).float().mean() > 0.999


def test_cache_is_keyed_by_trunk_tile_and_code_and_filled_once(tmp_path, monkeypatch):
    segmenter = _segmenter()
    calls = []
    original = segmenter.trunk_features
    monkeypatch.setattr(segmenter, "trunk_features", lambda x: calls.append(len(x)) or original(x))
    tiles = _tiles(3)
    cache = FeatureCache.for_segmenter(tmp_path, segmenter)
    dataset = CachedFeatureDataset(tiles, segmenter, cache, augment=True)
    dataset.warm(batch_size=5)
    assert sum(calls) == 3 * 8 and len(list(cache.root.glob("*.npy"))) == 24
    assert json.loads((cache.root / "key.json").read_text())["trunk"] == f"random-init:0|tiny|{SIZE}"
    dataset.warm()
    dataset.batch_features(_collate(dataset, [0, 2]), torch.Generator().manual_seed(0))
    assert sum(calls) == 24  # everything came from the cache

    # Another base (seed) is another trunk: other directory. Changed pixels: another tile key.
    other = FeatureCache.for_segmenter(tmp_path, _segmenter(seed=1))
    assert other.root != cache.root
    changed = dict(tiles[0], image=tiles[0]["image"].clone())
    changed["image"][0, 0, 0] += 0.5
    assert tile_key(changed["image"]) != tile_key(tiles[0]["image"])
    CachedFeatureDataset([changed], segmenter, cache).warm()
    assert sum(calls) == 25 and len(list(cache.root.glob("*.npy"))) == 25


def test_variants_training_inside_the_trunk_are_refused(tmp_path):
    with pytest.raises(ValueError, match="lora.*cannot be cached"):
        FeatureCache.for_segmenter(tmp_path, _segmenter("lora"))
    segmenter = _segmenter()
    with pytest.raises(ValueError, match="trunk"):
        CachedFeatureDataset(_tiles(1), segmenter, FeatureCache(tmp_path, "another trunk"))


def _project(root):
    doc = {
        "seed": 0,
        "data": {"name": "fc", "source": "synthetic",
                 "classes": [{"name": n, "color": c} for n, c in [("building", [255, 0, 0]), ("vegetation", [0, 255, 0]),
                                                                  ("water", [0, 0, 255]), ("road", [255, 255, 0]), ("background", [0, 0, 0])]],
                 "synthetic": {"n_scenes": 4, "scene_size": 128, "looks": 1, "seed": 0}},
        "preprocess": {"tile_size": SIZE, "stride": SIZE, "split": {"val": 0.25, "test": 0.25, "block_size": SIZE, "seed": 0}},
        "model": {"backbone": "tiny", "image_size": SIZE},
        "pretrain": {"enabled": False},
        # lr 3e-4: a stable trajectory, so the fp16 cache's rounding stays at 1e-4 of the loss (at 1e-3
        # the class head's reference init makes 8 steps chaotic enough to amplify it tenfold).
        "train": {"seeds": [0], "epochs": 2, "batch_size": 4, "max_seconds": None, "warmup_steps": 1, "augment": True,
                  "early_stopping_patience": 10, "checkpoint_every": 0, "lr": 3e-4},
        "tracking": {"enabled": False},
    }
    root.mkdir()
    (root / "params.yaml").write_text(yaml.safe_dump(doc))
    return load_params(root / "params.yaml")


def test_training_from_the_cache_gives_the_uncached_result(tmp_path):
    """Same seed, cached vs uncached trunk: same per-epoch losses and validation mIoU."""
    from samsar.data.prepare import prepare
    from samsar.data.preprocess import preprocess
    from samsar.training.loop import train_variant

    params = _project(tmp_path / "project")
    prepare(params)
    preprocess(params)
    runs = {}
    for cached in (True, False):
        # fp32: under bf16 autocast the uncached trunk runs in bf16 and the cached one in fp32.
        train = params.train.model_copy(update={"feature_cache": cached, "precision": "fp32"})
        p = params.model_copy(update={"train": train})
        summary = train_variant(p, "parser")
        history = list(csv.DictReader(open(p.variant_dir("parser") / "history.csv")))
        runs[cached] = (summary, history)
        (p.variant_dir("parser") / "history.csv").unlink()
    (cached_summary, cached_history), (plain_summary, plain_history) = runs[True], runs[False]
    cached_summary, plain_summary = cached_summary["runs"][0], plain_summary["runs"][0]
    assert cached_summary["feature_cache"] and not plain_summary["feature_cache"]
    assert list((params.root / ".cache" / "features").rglob("*-d*.npy"))
    assert cached_summary["best_val_mIoU"] == pytest.approx(plain_summary["best_val_mIoU"], abs=1e-3)
    assert len(cached_history) == len(plain_history) == 2
    for a, b in zip(cached_history, plain_history):
        assert float(a["train_loss"]) == pytest.approx(float(b["train_loss"]), rel=1e-3)
