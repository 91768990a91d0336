"""Fixtures for scene prediction."""

from pathlib import Path

import pytest
from predict_helpers import INTENSITY_SCALER, make_adapter


@pytest.fixture(scope="session")
def intensity_adapter(tmp_path_factory) -> Path:
    """Untrained tiny decoder_only adapter, 64 px windows, single-band intensity input."""
    return make_adapter(tmp_path_factory.mktemp("adapters") / "intensity", INTENSITY_SCALER, 64)

