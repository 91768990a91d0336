"""Running ``samsar`` as a user does and checking how it failed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def samsar(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600,
           unset: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """Run ``python -m samsar.cli ARGS`` in ``cwd`` (its own process, as from a shell), with ``env``
    added to this process's environment and the variables in ``unset`` removed."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    for key in ("SAMSAR_DEBUG", *unset):
        full_env.pop(key, None)
    return subprocess.run([sys.executable, "-m", "samsar.cli", *map(str, args)], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def samsar_in_process(*args: str) -> subprocess.CompletedProcess:
    """Run the ``samsar`` command in this process (faster; for faults patched in with monkeypatch).
    Paths in ``args`` must be absolute."""
    from typer.testing import CliRunner

    from samsar.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # not handled by the command's error boundary: a bug, show it
    return subprocess.CompletedProcess(list(args), result.exit_code, result.stdout, result.stderr)


def error_line(result: subprocess.CompletedProcess) -> str:
    """The ``error: ...`` line of a failed command's stderr."""
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert lines, f"no 'error:' line in stderr:\n{result.stderr}"
    return lines[-1]


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str, code: int = 1) -> str:
    """The command exited ``code`` with exactly one ``error:`` line holding every fragment, and no traceback."""
    assert result.returncode == code, f"exit {result.returncode}, expected {code}\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    return lines[0]


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes: to show nothing was destroyed or half-written."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def load_test_module(relative: str, name: str):
    """Import a helper module of another test folder (e.g. ``inference/predict_helpers.py``) under ``name``."""
    import importlib.util

    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "tests" / relative)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
