"""Adapter artifacts: only the trained tensors plus what is needed to rebuild the model.

``<dir>/adapter.safetensors`` holds the trained tensors (segmenter parameter names);
``<dir>/adapter.json`` holds the method, variant options, backbone, image size, number of
classes, base checkpoint (sha256 or ``random-init:<seed>``), the samsar version and every
key of the caller's ``meta`` (class names and colours, input scaling stats, ...).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

import samsar
from samsar.config import VariantOptions
from samsar.errors import SamsarError, one_line
from samsar.io import atomic_path, file_sha256, write_json
from samsar.models.segmenter import Segmenter
from samsar.models.variants import build_segmenter

TENSORS_FILE = "adapter.safetensors"
CONFIG_FILE = "adapter.json"
FORMAT_VERSION = 1
RANDOM_INIT_PREFIX = "random-init:"


class BaseMismatchError(SamsarError, ValueError):
    """The base checkpoint offered at load time is not the one the adapter was trained on."""


class ArtifactError(SamsarError, ValueError):
    """An adapter directory is incomplete or does not match the model it describes."""


def model_record(segmenter: Segmenter) -> dict[str, Any]:
    """The adapter.json fields that describe the model itself."""
    spec = segmenter.spec
    return {
        "format_version": FORMAT_VERSION,
        "method": spec.variant,
        "variant_options": spec.options.model_dump(mode="json"),
        "backbone": spec.backbone,
        "image_size": spec.image_size,
        "num_classes": spec.num_classes,
        "base_id": segmenter.base_id,
        "base_checkpoint": spec.checkpoint,
        "seed": spec.seed,
        "samsar_version": samsar.__version__,
        "tensors": {n: list(t.shape) for n, t in segmenter.trainable_state_dict().items()},
    }


def save_adapter(segmenter: Segmenter, out_dir: Path | str, meta: dict[str, Any]) -> Path:
    """Write ``adapter.safetensors`` + ``adapter.json`` into ``out_dir`` atomically."""
    if segmenter.merged:
        raise ArtifactError("save the adapter before merge(): a merged model has no separate trained tensors")
    record = model_record(segmenter)
    clashes = sorted(k for k in meta if k in record and meta[k] != record[k])
    if clashes:
        raise ArtifactError(f"meta keys {clashes} clash with the model's own adapter.json fields")
    tensors = {n: t.detach().to("cpu").contiguous() for n, t in segmenter.trainable_state_dict().items()}
    out_dir = Path(out_dir)
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        safetensors.torch.save_file(tensors, tmp / TENSORS_FILE)
        write_json(tmp / CONFIG_FILE, {**meta, **record})
    return out_dir


def read_adapter_config(adapter_dir: Path | str) -> dict[str, Any]:
    """Parse ``adapter.json`` of an adapter directory."""
    path = Path(adapter_dir) / CONFIG_FILE
    if not path.is_file():
        raise ArtifactError(f"{path}: not found; is {adapter_dir} an adapter directory written by `samsar train`?")
    try:
        config = json.loads(path.read_text())
    except ValueError as exc:
        raise ArtifactError(f"{path}: not valid JSON ({exc}); save the adapter again (`samsar train`)") from exc
    if config.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"{path}: format_version {config.get('format_version')} is not {FORMAT_VERSION}")
    return config


def load_adapter(
    adapter_dir: Path | str, checkpoint: Path | str | None = None, map_location: str | torch.device = "cpu"
) -> tuple[Segmenter, dict[str, Any]]:
    """Rebuild the base, apply the method, load the trained tensors strictly.

    ``checkpoint`` defaults to the path recorded in adapter.json. Raises
    :class:`BaseMismatchError` when its sha256 differs from the recorded one.
    """
    adapter_dir = Path(adapter_dir)
    config = read_adapter_config(adapter_dir)
    base_checkpoint = _verified_base(config, adapter_dir, checkpoint)
    segmenter = build_segmenter(
        config["method"],
        backbone=config["backbone"],
        image_size=config["image_size"],
        num_classes=config["num_classes"],
        checkpoint=base_checkpoint,
        options=VariantOptions.model_validate(config["variant_options"]),
        seed=config["seed"],
    )
    tensors_path = adapter_dir / TENSORS_FILE
    if not tensors_path.is_file():
        raise ArtifactError(f"{tensors_path}: not found")
    try:
        tensors = safetensors.torch.load_file(tensors_path)
    except (safetensors.SafetensorError, OSError, ValueError) as exc:
        raise ArtifactError(f"{tensors_path}: unreadable ({one_line(exc)}); the file is truncated or corrupt: "
                            f"copy it again or retrain the variant") from exc
    expected = segmenter.trainable_state_dict()
    if set(tensors) != set(expected):
        missing, extra = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
        raise ArtifactError(f"{tensors_path}: tensors do not match method '{config['method']}': "
                            f"missing {missing[:5]}, unexpected {extra[:5]}")
    for name, tensor in tensors.items():
        if tensor.shape != expected[name].shape:
            raise ArtifactError(f"{tensors_path}: {name} has shape {tuple(tensor.shape)}, "
                                f"the model expects {tuple(expected[name].shape)}")
    segmenter.load_state_dict(tensors, strict=False)
    return segmenter.to(map_location), config


def _verified_base(config: dict[str, Any], adapter_dir: Path, checkpoint: Path | str | None) -> Path | None:
    """The checkpoint to rebuild the base from, after checking its hash."""
    base_id = config["base_id"]
    if base_id.startswith(RANDOM_INIT_PREFIX):
        if checkpoint is not None:
            raise BaseMismatchError(f"{adapter_dir}: adapter was trained on a randomly initialised base "
                                    f"({base_id}), not on checkpoint {checkpoint}")
        return None
    if checkpoint is None:
        if config.get("base_checkpoint") is None:
            raise ArtifactError(f"{adapter_dir}: adapter.json records no base checkpoint path; pass checkpoint=")
        checkpoint = Path(config["base_checkpoint"])
        if not checkpoint.is_file():
            raise FileNotFoundError(f"{adapter_dir}: base checkpoint {checkpoint} recorded in adapter.json not found; "
                                    f"pass the checkpoint with sha256 {base_id}")
    checkpoint = Path(checkpoint)
    digest = file_sha256(checkpoint)
    if digest != base_id:
        raise BaseMismatchError(f"{checkpoint}: sha256 {digest} differs from the base {base_id} that the adapter "
                                f"in {adapter_dir} was trained on; use that checkpoint")
    return checkpoint
