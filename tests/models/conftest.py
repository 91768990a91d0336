"""Shared fixtures for the models tests: tiny SAM (256 px) builders and a tiny checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from samsar.config import ParserOptions, VariantOptions
from samsar.models.sam import build_sam
from samsar.models.variants import build_segmenter

TINY = dict(backbone="tiny", image_size=256, num_classes=3)


@pytest.fixture(autouse=True)
def single_thread():
    """Tiny models gain nothing from threads, and LAPACK's SVD slows down by an order of
    magnitude when its threads compete for a busy CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture()
def tiny_segmenter():
    """Factory: ``tiny_segmenter(variant, **overrides)`` -> a tiny 3-class segmenter
    (random-init base unless ``checkpoint`` is given)."""
    return lambda variant, **kwargs: build_segmenter(variant, **{**TINY, **kwargs})


@pytest.fixture()
def parser_on_blocks() -> VariantOptions:
    return VariantOptions(parser=ParserOptions(targets=["neck", "blocks"]))


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A tiny SAM state dict in the official key format (what `samsar pretrain` writes),
    with non-trivial position tables so interpolation is observable."""
    sam, _ = build_sam("tiny", 256, seed=7)
    with torch.no_grad():
        for name, p in sam.named_parameters():
            if "pos" in name:
                p.normal_(0, 0.02)
    path = tmp_path_factory.mktemp("ckpt") / "sam_tiny_base.pth"
    torch.save(sam.state_dict(), path)
    return path


@pytest.fixture()
def images() -> torch.Tensor:
    return torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(0))
