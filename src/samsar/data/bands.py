"""Input bands and SAM's three channels: which bands of a file are read, and how the channels are made.

``data.bands`` picks bands by 1-based index or by the band description stored in the file, and
names them; ``preprocess.compose`` builds SAM's three channels from those names, in working units
(dB when the scaler converts to dB or the input is dB, else linear):

- ``VV``: the band as is;
- ``VV-VH``: the difference (in dB, the log of the VV/VH ratio);
- ``VV/VH``: the ratio (in dB it equals ``VV-VH``; in linear units a plain quotient).

Sentinel-1 dual-pol in dB: ``[VV, VH, VV-VH]``; single-pol: ``[HH, HH, HH]``; Pauli RGB: ``[B1, B2, B3]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from samsar.config import Channel, parse_channel
from samsar.data.errors import DataError

__all__ = ["Channel", "compose", "parse_channel", "resolve_bands"]


def compose(values: np.ndarray, names: Sequence[str], channels: Sequence[str], db: bool) -> np.ndarray:
    """``(H, W, len(channels))`` float32 from band values ``(H, W, len(names))`` in working units."""
    index = {name: i for i, name in enumerate(names)}
    out = np.empty((*values.shape[:2], len(channels)), dtype=np.float32)
    with np.errstate(all="ignore"):  # a ratio over 0 gives Inf/NaN: left out of the fit, 0 after scaling
        for k, expr in enumerate(channels):
            channel = parse_channel(expr)
            a = values[..., index[channel.bands[0]]]
            if channel.op is None:
                out[..., k] = a
                continue
            b = values[..., index[channel.bands[1]]]
            out[..., k] = a - b if channel.op == "-" or db else a / b
    return out


def resolve_bands(
    bands: list[int | str] | dict[str, int | str] | None, descriptions: Sequence[str | None], count: int, path: Path
) -> tuple[int, ...]:
    """0-based indices of the ``data.bands`` of a file with ``count`` bands and these descriptions.

    ``None`` means every band. Raises :class:`DataError` for an index past the last band or a
    description the file does not hold exactly once.
    """
    if bands is None:
        return tuple(range(count))
    refs = list(bands.values()) if isinstance(bands, dict) else list(bands)
    indices = []
    for ref in refs:
        if isinstance(ref, int):
            if ref > count:
                raise DataError(f"{path}: data.bands asks for band {ref} but the file has {count} band(s); fix data.bands")
            indices.append(ref - 1)
            continue
        found = [i for i, d in enumerate(descriptions) if d == ref]
        if len(found) != 1:
            listed = ", ".join(f"{i + 1}: {d!r}" for i, d in enumerate(descriptions))
            problem = "no band" if not found else f"{len(found)} bands"
            raise DataError(
                f"{path}: {problem} described '{ref}' (bands {listed}); select bands by 1-based index in data.bands, "
                f"e.g. {{VV: 1, VH: 2}}"
            )
        indices.append(found[0])
    return tuple(indices)
