"""Resumable training checkpoints.

A checkpoint holds only tensors and primitive containers so it loads with
``torch.load(weights_only=True)``: trainable model state, optimizer, scheduler, counters,
best-so-far state and the random-number-generator states of python, numpy and torch.
A checkpoint that is missing or cannot be read raises :class:`TrainingError` naming the file.
"""

from __future__ import annotations

import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from samsar.errors import TrainingError
from samsar.io import atomic_path


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch RNG states as tensors / primitive values."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {
        "python": {"version": py_version, "state": list(py_state), "gauss": py_gauss},
        "numpy": {
            "name": np_name,
            "keys": torch.from_numpy(np_keys.astype(np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "gauss": float(np_gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state((npy["name"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"], npy["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` (plus the RNG states) atomically to ``path``."""
    with atomic_path(path) as tmp:
        torch.save({**state, "rng": rng_state()}, tmp)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only``: no code is unpickled)."""
    if not path.is_file():
        raise TrainingError(f"{path}: no checkpoint to resume from; train without --resume")
    fix = "delete it or train without --resume (which starts over and replaces it)"
    with path.open("rb") as f:  # an error opening it (permissions) is reported as such
        try:
            ckpt = torch.load(f, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            if "Unsupported global" not in str(exc):  # bytes that are no pickle at all
                raise TrainingError(f"{path}: unreadable checkpoint, truncated or corrupt; {fix}") from exc
            raise TrainingError(f"{path}: not a samsar checkpoint: it holds pickled Python objects, which are never "
                                f"loaded (weights_only); {fix}") from exc
        except Exception as exc:  # truncated or corrupt: RuntimeError, OSError, EOFError, IndexError... from torch
            raise TrainingError(f"{path}: unreadable checkpoint, truncated or corrupt; {fix}") from exc
    if not isinstance(ckpt, dict):
        raise TrainingError(f"{path}: not a samsar checkpoint (a {type(ckpt).__name__}, not a dict); {fix}")
    return ckpt
