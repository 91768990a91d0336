"""The DVC remote that workers pull the processed data and the base checkpoint from.

``samsar remote add URL`` makes ``URL`` (a local or shared path, ``s3://...``, ``ssh://...``) the
project's default DVC remote in ``.dvc/config``; :func:`pull` is what a Prefect worker runs in its
fresh clone (``pipelines/prefect.yaml``), reporting a missing ``dvc.lock`` or remote, or DVC's own
error, in one line.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from samsar.errors import SamsarError

REMOTE_NAME = "samsar"
TAIL_LINES = 4  # lines of DVC's stderr kept in a pull error
# What a worker needs from git besides the code (docs/gpu-workers.md lists the same). results/ is
# not among them: only train/evaluate/compare write it, and `git add` of a missing path adds nothing.
TO_COMMIT = ("dvc.lock", ".dvc/config", "params.yaml")


class RemoteError(SamsarError):
    """No DVC repository, remote or dvc.lock where one is needed, or DVC failed."""


def _dvc(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=root, capture_output=True, text=True)


def _is_url(target: str) -> bool:
    """``s3://``, ``ssh://``, ... or scp-like ``user@host:path``; anything else is a local path."""
    return "://" in target or re.match(r"^[\w.-]+@[\w.-]+:", target) is not None


def remotes(root: Path) -> dict[str, str]:
    """The project's DVC remotes, ``name -> url``."""
    result = _dvc(root, "remote", "list")
    if result.returncode != 0:
        raise RemoteError(f"{root}: `dvc remote list` failed ({_tail(result.stderr)}); is it a DVC repository (`dvc init`)?")
    found = {}
    for line in result.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2:
            found[parts[0]] = parts[1]
    return found


def default_remote(root: Path) -> str | None:
    """The name of the default DVC remote (``core.remote``), or None."""
    result = _dvc(root, "config", "core.remote")
    return result.stdout.strip() or None if result.returncode == 0 else None


def add_remote(root: Path, url: str, force: bool = False, name: str = REMOTE_NAME) -> str:
    """Make ``url`` the default DVC remote ``name`` of the repository at ``root``; returns what to do next.

    A local path is stored absolute (every worker must see it at that path); a relative one is taken
    from ``root``. A different default remote, or a remote ``name`` with another URL, is replaced
    only with ``force``.
    """
    root = Path(root)
    if not (root / ".dvc").is_dir():
        raise RemoteError(f"{root}: not a DVC repository; run `dvc init` there first (or pass --root)")
    target = url if _is_url(url) else str((root / Path(url).expanduser()).resolve())
    existing = remotes(root)
    current = default_remote(root)
    clashes = []
    if current not in (None, name):
        clashes.append(f"the default remote is '{current}' ({existing.get(current, '?')})")
    if name in existing and existing[name] != target:
        clashes.append(f"remote '{name}' points at {existing[name]}")
    if clashes and not force:
        raise RemoteError(f".dvc/config: {' and '.join(clashes)}; pass --force to make {target} the default remote '{name}'")
    if current == name and existing.get(name) == target:
        return f"DVC remote '{name}' -> {target} is already the default; next: " + next_steps()
    result = _dvc(root, "remote", "add", "--default", "--force", name, target)
    if result.returncode != 0:
        raise RemoteError(f".dvc/config: `dvc remote add {name} {target}` failed: {_tail(result.stderr)}")
    return f"DVC remote '{name}' -> {target} is now the default (.dvc/config); next: " + next_steps()


def next_steps() -> str:
    """The commands that make a clone pullable by a worker."""
    return (f"`dvc push` (after `dvc repro`), then `git add {' '.join(TO_COMMIT)}` "
            "(and `git add results/` once a full `dvc repro` has written it) and commit "
            "(credentials go in .dvc/config.local: `dvc remote modify --local ...`)")


def check_pullable(root: Path) -> str:
    """The default remote's name, after checking that ``root`` has a dvc.lock and a default remote."""
    root = Path(root)
    if not (root / "dvc.lock").is_file():
        raise RemoteError(f"{root / 'dvc.lock'}: not in this checkout, so DVC does not know what to pull; "
                          f"run `dvc repro` and `dvc push`, then commit dvc.lock")
    name = default_remote(root)
    if name is None:
        raise RemoteError(f"{root / '.dvc/config'}: no default DVC remote; run `samsar remote add <url>` and `dvc push`, "
                          f"then commit .dvc/config")
    return name


def pull(root: Path, targets: list[str]) -> str:
    """``dvc pull targets`` in ``root``; DVC's output is echoed, a failure raises :class:`RemoteError`
    with the last lines of DVC's error. Returns DVC's output."""
    name = check_pullable(root)
    result = _dvc(Path(root), "pull", *targets)
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    if result.returncode != 0:
        url = remotes(Path(root)).get(name, "?")
        raise RemoteError(f"dvc pull {' '.join(targets)} from remote '{name}' ({url}) failed: {_tail(result.stderr or result.stdout)}; "
                          f"check that the worker can reach the remote and that `dvc push` ran after `dvc repro`")
    return result.stdout


def _tail(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip() and not set(line.strip()) <= set("-=+|")]
    return " | ".join(lines[-TAIL_LINES:]) or "no output"
