"""The one error type of scene prediction."""

from __future__ import annotations

from samsar.errors import SamsarError


class PredictError(SamsarError, RuntimeError):
    """Prediction cannot run on this input; the message names the file and the fix."""
