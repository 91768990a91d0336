"""The base of every expected failure, and how the command line reports one.

An expected failure is bad input (data, params, checkpoints, adapters, registry state) or an
I/O problem the user can fix. The ``samsar`` command prints it as one line naming the file and
the fix and exits non-zero; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
import os

DEBUG_ENV = "SAMSAR_DEBUG"  # set (or `samsar --debug`): expected errors keep their traceback


class SamsarError(Exception):
    """An expected failure; the message names the file (or params key), the problem and the fix."""


class TrainingError(SamsarError, ValueError):
    """Training cannot start or continue as asked (no checkpoint to resume, an incompatible one, no steps)."""


class Interrupted(KeyboardInterrupt):
    """SIGTERM (or SIGINT) stopped the work; what was interrupted has been closed cleanly."""

    def __init__(self, signum: int, hint: str = "") -> None:
        super().__init__(signum)
        self.signum = signum
        self.hint = hint  # what to do next, e.g. the command that resumes


_OS_HINTS = {
    errno.ENOSPC: "free some space or write elsewhere",
    errno.EDQUOT: "free some space or write elsewhere",
    errno.EACCES: "check the permissions or write elsewhere",
    errno.EPERM: "check the permissions or write elsewhere",
    errno.EROFS: "the file system is read-only; write elsewhere",
    errno.ENOENT: "check the path",
    errno.EISDIR: "give a file path, not a directory",
    errno.ENOTDIR: "a parent of the path is a file; check the path",
}


def debug_enabled() -> bool:
    """Whether expected errors should show their traceback (``SAMSAR_DEBUG`` set and not 0)."""
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def is_expected(exc: BaseException | None) -> bool:
    """An error reported as one line rather than a traceback."""
    return isinstance(exc, (SamsarError, OSError))


def one_line(exc: BaseException) -> str:
    """The message of an expected failure as one line (an OSError gets its file and a fix)."""
    if isinstance(exc, OSError) and not isinstance(exc, SamsarError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename else ""
        hint = _OS_HINTS.get(exc.errno or 0)
        text = f"{where}{exc.strerror}" + (f"; {hint}" if hint else "")
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())
