"""What a run was made from: code version, data version, params and base checkpoint."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

from samsar.config import Params
from samsar.io import file_sha256

UNKNOWN = "unknown"


def git_sha(root: Path) -> str:
    """Commit of the code at ``root`` (``-dirty`` when tracked files changed), or ``"unknown"``."""
    try:
        sha = _git(root, "rev-parse", "HEAD")
        dirty = _git(root, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return UNKNOWN
    return f"{sha}-dirty" if dirty else sha


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True, timeout=30).stdout.strip()


def data_hash(params: Params) -> tuple[str, str]:
    """``(hash, source)`` identifying the processed dataset by its content only.

    ``(dataset_hash(processed_dir), "content")`` when the manifest and ``dataset.json`` exist, else
    ``("unknown", "none")``. Not the md5s of ``dvc.lock`` nor the manifest file's bytes: the manifest
    names each tile's source file by its machine path, so identical data in two checkouts would
    hash differently and the promotion gate would refuse a model trained on the same data.
    """
    processed = params.processed_dir
    if (processed / "manifest.parquet").is_file() and (processed / "dataset.json").is_file():
        return dataset_hash(processed), "content"
    return UNKNOWN, "none"


def dataset_hash(processed_dir: Path) -> str:
    """``sha256:`` of the processed dataset's content, whatever folder it sits in.

    Covers every tile's id, split and content hash (the manifest's ``sha256`` of image and label
    bytes), in manifest order, and ``dataset.json`` (classes, scaling, tile size) without its
    ``notes``; leaves out what names a machine path (``source_file``, the notes), so a moved
    checkout or dataset keeps its hash.
    """
    import pandas as pd

    from samsar.data.errors import DataError

    manifest, description = processed_dir / "manifest.parquet", processed_dir / "dataset.json"
    try:
        tiles = pd.read_parquet(manifest, columns=["tile_id", "split", "sha256"])
        doc = {k: v for k, v in json.loads(description.read_text()).items() if k != "notes"}
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"{processed_dir}: cannot read the manifest or dataset.json ({exc}); run `samsar preprocess`") from exc
    digest = hashlib.sha256(json.dumps(doc, sort_keys=True).encode())
    digest.update(tiles.to_csv(index=False).encode())
    return "sha256:" + digest.hexdigest()


def flatten_params(params: Params, sections: set[str] | None = None) -> dict[str, str]:
    """params.yaml as dotted keys (``train.lr``); values other than strings as JSON. ``root`` is left
    out (a machine path); ``sections`` keeps only those top-level keys."""
    flat: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), item)
        else:
            flat[prefix] = value if isinstance(value, str) else json.dumps(value)

    walk("", params.model_dump(mode="json", include=sections, exclude={"root"}))
    return flat


def base_checkpoint_path(params: Params) -> Path | None:
    """The SAM checkpoint the adapters are trained on: the configured one or the pretrained stand-in."""
    if params.model.checkpoint is not None:
        return params.path(params.model.checkpoint)
    if params.pretrain.enabled:
        return params.path(params.pretrain.output)
    return None


def base_checkpoint_ref(params: Params) -> str:
    """The base checkpoint as params name it (``models/base/sam_tiny_base.pth``, ``model.checkpoint``):
    relative to the project when inside it, so a run in a worker's temporary clone records no
    temporary path; ``"none"`` without one. Identify it with :func:`base_checkpoint_id` (sha256)."""
    if params.model.checkpoint is not None:
        configured = Path(params.model.checkpoint)
    elif params.pretrain.enabled:
        configured = Path(params.pretrain.output)
    else:
        return "none"
    return project_relative(params, configured)


def project_relative(params: Params, path: Path | str) -> str:
    """``path`` relative to the project root (params.yaml's folder) when inside it, else as given (POSIX)."""
    path = Path(path)
    absolute = params.path(path).resolve() if not path.is_absolute() else path.resolve()
    root = params.root.resolve()
    return absolute.relative_to(root).as_posix() if absolute.is_relative_to(root) else path.as_posix()


def base_checkpoint_id(params: Params) -> str:
    """sha256 of the base checkpoint, ``"random-init"`` without one, ``"missing:<path>"`` if absent."""
    path = base_checkpoint_path(params)
    if path is None:
        return "random-init"
    if not path.is_file():
        return f"missing:{path}"
    return file_sha256(path)
