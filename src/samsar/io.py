"""File helpers: atomic writes (outputs appear complete or not at all) and content hashing."""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import json
import math
import numbers
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(target: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` on success.

    Works for files and directories. On error the temporary path is removed and
    ``target`` is left as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent)) / target.name
    except OSError as exc:  # name the output, not the temporary name
        raise _named(exc, target) from exc
    try:
        try:
            yield tmp
        except OSError as exc:  # name the output, not the temporary name
            if exc.strerror and exc.filename and str(exc.filename).startswith(str(tmp)):
                raise _named(exc, str(target) + str(exc.filename)[len(str(tmp)):]) from exc
            raise
        _umask_permissions(tmp)
        target_is_dir = target.is_dir() and not target.is_symlink()
        if target_is_dir != tmp.is_dir() and target.exists():
            kind = "a directory" if target_is_dir else "a file"
            raise FileExistsError(errno.EEXIST, f"is {kind}; not replaced by {'a file' if target_is_dir else 'a directory'}", str(target))
        if target_is_dir:
            _replace_dir(tmp, target)
        else:
            os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp.parent, ignore_errors=True)


@contextlib.contextmanager
def name_os_errors(path: Path | str) -> Iterator[None]:
    """Give an OSError raised without a file name (a full disk during ``write()``) the name ``path``."""
    try:
        yield
    except OSError as exc:
        if exc.strerror and not exc.filename:
            raise _named(exc, path) from exc
        raise


def _named(exc: OSError, filename: Path | str) -> OSError:
    """The same OSError (type, errno, message) naming ``filename`` instead."""
    return type(exc)(exc.errno, exc.strerror, str(filename))


def _replace_dir(new: Path, target: Path) -> None:
    """Swap directory ``new`` in for ``target`` (two renames; the old one is restored if the second fails)."""
    old = new.parent / f"{target.name}.old"
    target.rename(old)
    try:
        os.replace(new, target)
    except BaseException:
        old.rename(target)
        raise


def _umask_permissions(path: Path) -> None:
    """Give written files the permissions a plain ``open()`` would (0666 less the umask), so
    writers that create private files (safetensors writes 0600) do not hide outputs from other
    users of a shared store."""
    umask = os.umask(0)
    os.umask(umask)
    for file in path.rglob("*") if path.is_dir() else [path]:
        if file.is_file() and not file.is_symlink():
            file.chmod(0o666 & ~umask)


def write_text(target: Path | str, text: str) -> None:
    """Write text atomically."""
    with atomic_path(target) as tmp:
        tmp.write_text(text)


def write_json(target: Path | str, obj: Any) -> None:
    """Write strict JSON (indented, sorted keys) atomically.

    NaN and infinities are refused (``json.loads`` elsewhere, JavaScript, ``jq`` reject them): the
    writer turns an undefined value into None first, e.g. with :func:`finite_or_none`.
    """
    try:
        text = json.dumps(obj, indent=2, sort_keys=True, default=str, allow_nan=False)
    except ValueError as exc:
        raise ValueError(f"{target}: {exc}; write None for an undefined number (samsar.io.finite_or_none)") from exc
    write_text(target, text + "\n")


def is_finite_number(value: Any) -> bool:
    """A real, finite number (numpy scalars included); False for bools, None, NaN, infinities and the rest."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def finite_or_none(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float (numpy ones included), in nested dicts/lists, replaced by None."""
    if isinstance(obj, dict):
        return {key: finite_or_none(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_none(value) for value in obj]
    if isinstance(obj, float) or (hasattr(obj, "dtype") and getattr(obj, "shape", None) == () and obj.dtype.kind == "f"):
        return float(obj) if math.isfinite(obj) else None
    return obj


def file_sha256(path: Path | str) -> str:
    """Hex sha256 of a file's bytes, read in chunks (cached per path, size and modification time)."""
    path = Path(path).resolve()
    stat = path.stat()
    return _sha256_cached(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:  # size, mtime_ns: cache key only
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
