"""Progress of a long loop that shows off a terminal too.

On a terminal: a tqdm bar. Elsewhere (``dvc repro`` under nohup, CI logs, a Prefect worker), where
tqdm's ``disable=None`` hides the bar, plain lines on stderr every 10 % of the total and at least
every 30 s (checked at each update), with the count, the elapsed time, an ETA and the postfix
(e.g. the loss), so a long preprocessing, feature caching, pretraining, training, evaluation or
scene prediction is seen to advance.

At the bottom of the layers (plain tqdm) so data, training, evaluation and inference can all use it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import IO, TypeVar

from tqdm import tqdm

PLAIN_FRACTION = 0.1  # a plain line every 10 % of the total ...
PLAIN_SECONDS = 30.0  # ... and at least this often

T = TypeVar("T")


def format_seconds(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``2 h 07 min``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class Progress:
    """``update`` / ``set_postfix`` / ``close`` like a tqdm bar; ``enabled=False`` shows nothing (other ranks).

    ``clock`` (seconds, monotonic) is injectable so tests need no sleeps.
    """

    def __init__(self, total: int, desc: str, initial: int = 0, enabled: bool = True, stream: IO[str] | None = None,
                 fraction: float = PLAIN_FRACTION, seconds: float = PLAIN_SECONDS, unit: str = "step",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        tty = bool(isatty and isatty())
        self.bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True, file=self.stream,
                        disable=not (enabled and tty))
        self.plain = enabled and not tty
        self.total, self.desc, self.unit, self.n = total, desc, unit, initial
        self.every = max(1, round(total * fraction))
        self.seconds = seconds
        self.clock = clock
        self.start = self.last_time = clock()
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
        now = self.clock()
        if self.n // self.every > self.last_n // self.every or self.n >= self.total or now - self.last_time >= self.seconds:
            self._line(now)

    def iterate(self, items: Iterable[T]) -> Iterator[T]:
        """Yield ``items``, counting a step as each one is done; closes the bar after the last."""
        for item in items:
            yield item
            self.update()
        self.close()

    def close(self) -> None:
        self.bar.close()
        if self.plain and self.n != self.last_n:
            self._line(self.clock())

    def _line(self, now: float) -> None:
        elapsed = now - self.start
        done = self.n - self.start_n
        eta = f", ETA {format_seconds(elapsed / done * (self.total - self.n))}" if 0 < done and self.n < self.total else ""
        extra = "".join(f", {key} {value}" for key, value in self.postfix.items())
        pct = 100 * self.n / self.total if self.total else 100.0
        print(f"{self.desc}: {self.unit} {self.n}/{self.total} ({pct:.0f} %), {format_seconds(elapsed)}{eta}{extra}",
              file=self.stream, flush=True)
        self.last_n, self.last_time = self.n, now
