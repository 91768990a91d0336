"""SAR radiometric scaling: raw pixels of any supported kind to a 3-channel float image in [0, 1].

The same :class:`SarScaler` (fitted on the training split, stored in ``dataset.json`` and in the
adapter's ``adapter.json``) is used by preprocessing, training and scene inference:
``SarScaler.from_dict(d).transform(raw)``. It records every choice, so ``predict`` reads a scene
exactly as the training tiles were read.

Steps:

1. **Select** the bands of the file (``data.bands``: ``bands`` holds their 0-based indices, the file
   having ``file_bands`` bands); without a selection every band is used.
2. **Convert** (``preprocess.input_kind`` / ``to_db``): amplitude -> ``20 log10``, intensity (linear
   power) -> ``10 log10``, ``db`` -> as is; with ``to_db: false`` values are used linearly. Products that
   are already display-scaled (uint8 JPEG/PNG/BMP amplitude, e.g. HRSID chips or a Pauli RGB
   composite) have been compressed by their producer; for these set ``to_db: false`` so their grey
   levels are only clipped and stretched, not log-compressed a second time.
3. **Compose** SAM's 3 channels (``preprocess.compose``, see :mod:`samsar.data.bands`), e.g.
   ``[VV, VH, VV-VH]``; each composed channel gets its own clip range.
4. **Clip** at the low/high percentiles of the training split (per channel, nodata pixels left out)
   and scale to [0, 1].

Without ``compose`` the legacy rule applies after clipping: 1 channel -> replicated; 2 channels
(dual-pol) -> ``(c1, c2, mean)``; 3 channels (e.g. Pauli RGB) -> as is.

Nodata: values listed in ``nodata`` (``data.nodata``; NaN allowed) mark a pixel as nodata when any
used band holds one (:meth:`SarScaler.valid`); callers zero such pixels. Non-finite values map to 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

from samsar.data.bands import compose

InputKind = Literal["amplitude", "intensity", "db"]
# Floor before the log: -100 dB intensity, far below any real backscatter; the percentile clip
# then takes care of exact zeros (e.g. padding or no-data).
_LOG_FLOOR = 1e-10


@dataclass(frozen=True)
class SarScaler:
    """Band choice, conversion, composition and per-channel clip range; ``low``/``high`` are empty until fitted."""

    input_kind: InputKind = "intensity"
    to_db: bool = True
    percentiles: tuple[float, float] = (1.0, 99.0)
    low: tuple[float, ...] = ()
    high: tuple[float, ...] = ()
    bands: tuple[int, ...] = ()  # 0-based indices of the used bands in the file; () = every band
    band_names: tuple[str, ...] = ()  # names of the used bands (what ``compose`` refers to)
    file_bands: int = 0  # band count of the files it was fitted on (0: as many as it uses)
    compose: tuple[str, ...] = ()  # SAM's 3 channels; () = legacy rule (replicate / mean / as is)
    nodata: tuple[float, ...] = ()  # configured nodata values (NaN allowed)

    @property
    def channels(self) -> int:
        """Number of bands the scaler uses (0 before fitting, unless bands are selected)."""
        return len(self.bands) if self.bands else len(self.low)

    @property
    def input_bands(self) -> int:
        """Number of bands an input file must have."""
        return self.file_bands or self.channels

    @property
    def in_db(self) -> bool:
        """Whether the working units (after :meth:`convert`) are dB."""
        return self.input_kind == "db" or self.to_db

    def select(self, raw: np.ndarray) -> np.ndarray:
        """The used bands ``(H, W, C)`` of raw ``(H, W)`` or ``(H, W, file_bands)`` pixels."""
        values = np.asarray(raw)
        values = values[..., None] if values.ndim == 2 else values
        if self.file_bands and values.shape[-1] != self.file_bands:
            raise ValueError(
                f"SarScaler: input has {values.shape[-1]} band(s), the scaler was fitted on files of {self.file_bands}"
            )
        return values[..., list(self.bands)] if self.bands else values

    def convert(self, raw: np.ndarray) -> np.ndarray:
        """Raw ``(H, W)`` or ``(H, W, C)`` pixels -> float32 ``(H, W, C)`` of the used bands in dB or linear units."""
        values = self.select(raw).astype(np.float32)
        if self.to_db and self.input_kind != "db":
            factor = 20.0 if self.input_kind == "amplitude" else 10.0
            values = factor * np.log10(np.maximum(np.abs(values), _LOG_FLOOR))
        return values

    def features(self, raw: np.ndarray) -> np.ndarray:
        """Converted and composed ``(H, W, n)`` float32: the values the clip range applies to."""
        values = self.convert(raw)
        if not self.compose:
            return values
        names = self.band_names or tuple(f"B{i + 1}" for i in range(values.shape[-1]))
        return compose(values, names, self.compose, self.in_db)

    def valid(self, raw: np.ndarray) -> np.ndarray:
        """``(H, W)`` bool: False where a used band holds a configured nodata value (or NaN, if configured)."""
        return nodata_valid(self.select(raw), self.nodata)

    def fit(self, raws: Iterable, max_samples: int = 1_000_000, seed: int = 0) -> "SarScaler":
        """A fitted copy: percentiles of the composed values of ``raws`` (e.g. training tiles).

        Each item is a raw array, or a ``(raw, valid)`` pair whose ``valid`` ``(H, W)`` mask leaves
        nodata pixels out. Pixels matching ``nodata`` and non-finite values never count. Memory
        stays bounded: values go through a uniform reservoir sample of at most ``max_samples``
        pixels, however many arrays are given.
        """
        sample = ReservoirSample(max_samples, seed)
        for item in raws:
            raw, valid = item if isinstance(item, tuple) else (item, None)
            keep = self.valid(raw) if valid is None else self.valid(raw) & valid
            with np.errstate(all="ignore"):
                values = self.features(raw)
            sample.add(values[keep])
        values = sample.values
        if values is None or values.shape[0] == 0:
            raise ValueError("SarScaler.fit: no valid pixels to fit on (is the training split empty, or all nodata?)")
        finite = np.isfinite(values).all(axis=1)
        if not finite.any():
            raise ValueError("SarScaler.fit: no finite pixel values to fit on")
        low, high = np.percentile(values[finite], self.percentiles, axis=0)
        high = np.maximum(high, low + 1e-6)  # constant channels must not divide by zero
        return self._with(low=tuple(map(float, low)), high=tuple(map(float, high)))

    def _with(self, **changes) -> "SarScaler":
        return SarScaler(**{**self.__dict__, **changes})

    def transform(self, raw: np.ndarray) -> np.ndarray:
        """Raw ``(H, W)`` or ``(H, W, C)`` pixels -> float32 ``(3, H, W)`` in ``[0, 1]``."""
        if not self.low:
            raise ValueError("SarScaler.transform: the scaler is not fitted")
        given = np.shape(raw)[-1] if np.ndim(raw) == 3 else 1
        if not self.file_bands and given != self.channels:
            raise ValueError(f"SarScaler.transform: input has {given} channel(s), the scaler was fitted on {self.channels}")
        values = self.features(raw)
        low, high = np.asarray(self.low, np.float32), np.asarray(self.high, np.float32)
        scaled = np.clip((values - low) / (high - low), 0.0, 1.0)
        scaled = np.nan_to_num(scaled, nan=0.0)
        scaled = np.moveaxis(scaled, -1, 0)
        if not self.compose and scaled.shape[0] == 1:
            scaled = np.repeat(scaled, 3, axis=0)
        elif not self.compose and scaled.shape[0] == 2:
            scaled = np.concatenate([scaled, scaled.mean(axis=0, keepdims=True)])
        return np.ascontiguousarray(scaled, dtype=np.float32)

    def describe(self) -> str:
        """One line for reports: bands, units and channels."""
        units = {"amplitude": "amplitude", "intensity": "linear power", "db": "dB"}[self.input_kind]
        work = "dB" if self.in_db else "linear"
        bands = ", ".join(f"{n} (band {i + 1})" for n, i in zip(self.band_names, self.bands)) or f"{self.channels} band(s)"
        channels = ", ".join(self.compose) if self.compose else {1: "replicated", 2: "b1, b2, mean"}.get(self.channels, "as is")
        return f"{bands} in {units}, worked in {work}; SAM channels: {channels}"

    def to_dict(self) -> dict:
        """JSON-ready form (stored in ``dataset.json`` and adapter metadata); NaN nodata is written ``"nan"``."""
        d = asdict(self)
        for key in ("percentiles", "low", "high", "bands", "band_names", "compose"):
            d[key] = list(d[key])
        d["nodata"] = ["nan" if math.isnan(v) else v for v in self.nodata]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SarScaler":
        """Inverse of :meth:`to_dict`; dicts written before band selection existed load as before."""
        return cls(
            input_kind=d["input_kind"],
            to_db=bool(d["to_db"]),
            percentiles=tuple(d["percentiles"]),
            low=tuple(d["low"]),
            high=tuple(d["high"]),
            bands=tuple(int(i) for i in d.get("bands", ())),
            band_names=tuple(d.get("band_names", ())),
            file_bands=int(d.get("file_bands", 0)),
            compose=tuple(d.get("compose", ())),
            nodata=tuple(float(v) for v in d.get("nodata", ())),
        )


def nodata_valid(values: np.ndarray, nodata: Iterable[float]) -> np.ndarray:
    """``(H, W)`` bool of band values ``(H, W, C)``: False where any band holds one of ``nodata`` (NaN allowed)."""
    valid = np.ones(values.shape[:2], dtype=bool)
    for value in nodata:
        hit = np.isnan(values) if math.isnan(value) else values == value
        valid &= ~hit.any(axis=-1)
    return valid


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
