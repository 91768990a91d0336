"""SAR radiometric scaling: raw pixels of any supported kind to a 3-channel float image in [0, 1].

The same :class:`SarScaler` (fitted on the training split, stored in ``dataset.json``) is used by
preprocessing, training and scene inference: ``SarScaler.from_dict(d).transform(raw)``.

Steps per channel:

1. **Convert** (``preprocess.input_kind`` / ``to_db``): amplitude -> ``20 log10``, intensity ->
   ``10 log10``, ``db`` -> as is; with ``to_db: false`` values are used linearly. Products that are
   already display-scaled (uint8 JPEG/PNG/BMP amplitude, e.g. HRSID chips or a Pauli RGB
   composite) have been compressed by their producer; for these set ``to_db: false`` so their grey
   levels are only clipped and stretched, not log-compressed a second time.
2. **Clip** at the low/high percentiles of the training split (per channel) and scale to [0, 1].
3. **Compose** 3 channels for SAM: 1 channel -> replicated; 2 channels (dual-pol) ->
   ``(c1, c2, mean)``; 3 channels (e.g. Pauli RGB) -> as is.

Non-finite values (no-data) map to 0.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

InputKind = Literal["amplitude", "intensity", "db"]
# Floor before the log: -100 dB intensity, far below any real backscatter; the percentile clip
# then takes care of exact zeros (e.g. padding or no-data).
_LOG_FLOOR = 1e-10


@dataclass(frozen=True)
class SarScaler:
    """Conversion and per-channel clip range; ``low``/``high`` are empty until fitted."""

    input_kind: InputKind = "intensity"
    to_db: bool = True
    percentiles: tuple[float, float] = (1.0, 99.0)
    low: tuple[float, ...] = ()
    high: tuple[float, ...] = ()

    @property
    def channels(self) -> int:
        """Number of input channels the scaler was fitted on (0 before fitting)."""
        return len(self.low)

    def convert(self, raw: np.ndarray) -> np.ndarray:
        """Raw ``(H, W)`` or ``(H, W, C)`` pixels -> float32 ``(H, W, C)`` in dB or linear units."""
        values = np.asarray(raw)
        values = (values[..., None] if values.ndim == 2 else values).astype(np.float32)
        if self.to_db and self.input_kind != "db":
            factor = 20.0 if self.input_kind == "amplitude" else 10.0
            values = factor * np.log10(np.maximum(np.abs(values), _LOG_FLOOR))
        return values

    def fit(self, raws: Iterable[np.ndarray], max_samples: int = 1_000_000, seed: int = 0) -> "SarScaler":
        """A fitted copy: percentiles of the converted values of ``raws`` (e.g. training tiles).

        Memory stays bounded: values go through a uniform reservoir sample of at most
        ``max_samples`` pixels, however many arrays are given.
        """
        sample = ReservoirSample(max_samples, seed)
        for raw in raws:
            converted = self.convert(raw)
            sample.add(converted.reshape(-1, converted.shape[-1]))
        values = sample.values
        if values is None or values.shape[0] == 0:
            raise ValueError("SarScaler.fit: no pixels to fit on (is the training split empty?)")
        finite = np.isfinite(values).all(axis=1)
        low, high = np.percentile(values[finite], self.percentiles, axis=0)
        high = np.maximum(high, low + 1e-6)  # constant channels must not divide by zero
        return SarScaler(self.input_kind, self.to_db, self.percentiles, tuple(map(float, low)), tuple(map(float, high)))

    def transform(self, raw: np.ndarray) -> np.ndarray:
        """Raw ``(H, W)`` or ``(H, W, C)`` pixels -> float32 ``(3, H, W)`` in ``[0, 1]``."""
        if not self.channels:
            raise ValueError("SarScaler.transform: the scaler is not fitted")
        values = self.convert(raw)
        if values.shape[-1] != self.channels:
            raise ValueError(
                f"SarScaler.transform: input has {values.shape[-1]} channel(s), the scaler was fitted on {self.channels}"
            )
        low, high = np.asarray(self.low, np.float32), np.asarray(self.high, np.float32)
        scaled = np.clip((values - low) / (high - low), 0.0, 1.0)
        scaled = np.nan_to_num(scaled, nan=0.0)
        scaled = np.moveaxis(scaled, -1, 0)
        if self.channels == 1:
            scaled = np.repeat(scaled, 3, axis=0)
        elif self.channels == 2:
            scaled = np.concatenate([scaled, scaled.mean(axis=0, keepdims=True)])
        return np.ascontiguousarray(scaled, dtype=np.float32)

    def to_dict(self) -> dict:
        """JSON-ready form (stored in ``dataset.json`` and adapter metadata)."""
        return {**asdict(self), "percentiles": list(self.percentiles), "low": list(self.low), "high": list(self.high)}

    @classmethod
    def from_dict(cls, d: dict) -> "SarScaler":
        """Inverse of :meth:`to_dict`."""
        return cls(
            input_kind=d["input_kind"],
            to_db=bool(d["to_db"]),
            percentiles=tuple(d["percentiles"]),
            low=tuple(d["low"]),
            high=tuple(d["high"]),
        )


class ReservoirSample:
    """A uniform random sample without replacement of at most ``capacity`` rows from a stream.

    Every row gets a random key and the rows with the smallest keys are kept. Rows are buffered
    and compacted when the buffer doubles, so adding costs amortised O(rows); once full, rows
    whose key cannot beat the kept ones are dropped on arrival.
    """

    def __init__(self, capacity: int, seed: int = 0):
        self.capacity = capacity
        self._rng = np.random.default_rng(seed)
        self._chunks: list[tuple[np.ndarray, np.ndarray]] = []
        self._buffered = 0
        self._threshold = np.inf  # key of the capacity-th row after the last compaction

    def add(self, rows: np.ndarray) -> None:
        keys = self._rng.random(rows.shape[0])
        accepted = keys < self._threshold
        if not accepted.all():
            rows, keys = rows[accepted], keys[accepted]
        self._chunks.append((rows, keys))
        self._buffered += rows.shape[0]
        if self._buffered > 2 * self.capacity:
            self._compact()

    def _compact(self) -> None:
        rows = np.concatenate([r for r, _ in self._chunks])
        keys = np.concatenate([k for _, k in self._chunks])
        if rows.shape[0] > self.capacity:
            keep = np.argpartition(keys, self.capacity - 1)[: self.capacity]
            rows, keys = rows[keep], keys[keep]
            self._threshold = float(keys.max())
        self._chunks = [(rows, keys)]
        self._buffered = rows.shape[0]

    @property
    def values(self) -> np.ndarray | None:
        """The sampled rows (``None`` before anything was added)."""
        if not self._chunks:
            return None
        self._compact()
        return self._chunks[0][0]
