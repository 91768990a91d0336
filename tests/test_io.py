"""samsar.io: JSON outputs are strict (no NaN/Infinity), undefined numbers become null."""

import json
import math

import numpy as np
import pytest

from samsar.io import finite_or_none, write_json


def strict_loads(text: str):
    def refuse(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    return json.loads(text, parse_constant=refuse)


def test_write_json_refuses_nan_naming_the_file(tmp_path):
    target = tmp_path / "metrics.json"
    with pytest.raises(ValueError, match=r"metrics\.json.*finite_or_none"):
        write_json(target, {"kappa": float("nan")})
    assert not target.exists()  # nothing half-written
    with pytest.raises(ValueError):
        write_json(target, {"x": [1.0, math.inf]})


def test_finite_or_none_turns_undefined_numbers_into_null(tmp_path):
    obj = {"kappa": float("nan"), "per_class_iou": {"a": np.float64("nan"), "b": np.float32(0.5)},
           "seeds": [{"OA": -math.inf, "seed": 0, "name": "x", "ok": True}], "none": None}
    clean = finite_or_none(obj)
    assert clean == {"kappa": None, "per_class_iou": {"a": None, "b": 0.5},
                     "seeds": [{"OA": None, "seed": 0, "name": "x", "ok": True}], "none": None}
    write_json(tmp_path / "m.json", clean)
    assert strict_loads((tmp_path / "m.json").read_text())["per_class_iou"] == {"a": None, "b": 0.5}
