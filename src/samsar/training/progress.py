"""Step progress that shows off a terminal too.

On a terminal: a tqdm bar. Elsewhere (``dvc repro`` under nohup, CI logs, a Prefect worker), where
tqdm's ``disable=None`` hides the bar, plain lines on stderr every 10 % of the step budget and at
least every minute, so a long (pre)training is seen to advance.
"""

from __future__ import annotations

import sys
import time
from typing import IO

from tqdm import tqdm

PLAIN_FRACTION = 0.1  # a plain line every 10 % of the budget ...
PLAIN_SECONDS = 60.0  # ... and at least this often


class Progress:
    """``update`` / ``set_postfix`` / ``close`` like a tqdm bar; ``enabled=False`` shows nothing (other ranks)."""

    def __init__(self, total: int, desc: str, initial: int = 0, enabled: bool = True, stream: IO[str] | None = None,
                 fraction: float = PLAIN_FRACTION, seconds: float = PLAIN_SECONDS) -> None:
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        tty = bool(isatty and isatty())
        self.bar = tqdm(total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True, file=self.stream,
                        disable=not (enabled and tty))
        self.plain = enabled and not tty
        self.total, self.desc, self.n = total, desc, initial
        self.every = max(1, round(total * fraction))
        self.seconds = seconds
        self.start = self.last_time = time.monotonic()
        self.start_n = self.last_n = initial
        self.postfix: dict[str, str] = {}

    def set_postfix(self, **values: object) -> None:
        self.postfix = {key: str(value) for key, value in values.items()}
        self.bar.set_postfix(**values)

    def update(self, n: int = 1) -> None:
        self.bar.update(n)
        self.n += n
        if not self.plain:
            return
        now = time.monotonic()
        if self.n // self.every > self.last_n // self.every or self.n >= self.total or now - self.last_time >= self.seconds:
            self._line(now)

    def close(self) -> None:
        self.bar.close()
        if self.plain and self.n != self.last_n:
            self._line(time.monotonic())

    def _line(self, now: float) -> None:
        elapsed = now - self.start
        done = self.n - self.start_n
        eta = f", ~{elapsed / done * (self.total - self.n):.0f} s left" if 0 < done and self.n < self.total else ""
        extra = "".join(f", {key} {value}" for key, value in self.postfix.items())
        pct = 100 * self.n / self.total if self.total else 100.0
        print(f"{self.desc}: step {self.n}/{self.total} ({pct:.0f} %), {elapsed:.0f} s{eta}{extra}", file=self.stream, flush=True)
        self.last_n, self.last_time = self.n, now
