"""Step progress of (pre)training: :class:`samsar.progress.Progress` (a tqdm bar on a terminal, plain
lines every 10 % and at least every 30 s elsewhere). It lives below the evaluation layer, which
uses it too; this name stays for the training code."""

from samsar.progress import PLAIN_FRACTION, PLAIN_SECONDS, Progress, format_seconds

__all__ = ["PLAIN_FRACTION", "PLAIN_SECONDS", "Progress", "format_seconds"]
