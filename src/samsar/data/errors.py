"""The one error type raised for bad input data."""

from __future__ import annotations

from samsar.errors import SamsarError


class DataError(SamsarError, ValueError):
    """Input data is unusable; the message names the file, the problem and the fix."""
