"""Fixtures for the data-stage tests."""

from __future__ import annotations

import pytest
from data_helpers import write_params

from samsar.config import load_params


@pytest.fixture
def params_factory(tmp_path):
    """``make(data=..., preprocess=...) -> Params`` rooted in a fresh temporary project."""

    def make(**kwargs):
        return load_params(write_params(tmp_path / "project", **kwargs))

    return make
