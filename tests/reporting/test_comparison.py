"""The comparison table: best value per column in bold, majority baseline row."""

import json

import pytest

from samsar.config import Params
from samsar.reporting.comparison import comparison_table, write_comparison


def _metrics(miou, params, seconds, size):
    return {"mIoU": miou, "mF1": miou + 0.1, "OA": 0.8, "kappa": miou - 0.1, "n_trainable_params": params,
            "artifact_bytes": size, "train_seconds": seconds, "ignore_background": {"mIoU": miou - 0.05}}


def test_best_per_column_is_bold():
    rows = {"small": _metrics(0.6, 1000, 50.0, 4096), "big": _metrics(0.7, 9000, 80.0, 8192)}
    table = comparison_table(rows, {"mIoU": 0.1, "mF1": 0.1, "OA": 0.4, "kappa": 0.0, "class": "bg"})
    small = next(line for line in table.splitlines() if line.startswith("| small"))
    big = next(line for line in table.splitlines() if line.startswith("| big"))
    assert "**1,000**" in small and "**4.0 KiB**" in small and "**50 s**" in small and "**0.600**" not in small
    assert "**0.700**" in big and "**0.650**" in big and "9,000" in big and "**9,000**" not in big
    majority = table.splitlines()[-1]
    assert majority.startswith("| majority class (bg)") and "0.100" in majority and "**" not in majority


def test_write_comparison_needs_metrics(tmp_path):
    params = Params.model_validate({
        "data": {"classes": [{"name": "a", "color": [0, 0, 0]}], "background": None},
        "variants": ["decoder_only", "lora"], "root": str(tmp_path),
    })
    with pytest.raises(FileNotFoundError, match="samsar evaluate"):
        write_comparison(params)
    params.metrics_path("lora").parent.mkdir(parents=True)
    params.metrics_path("lora").write_text(json.dumps({**_metrics(0.5, 10, 1.0, 10), "n_test_tiles": 3,
                                                       "majority": {"mIoU": 0.2}, "majority_class": "a"}))
    text = write_comparison(params).read_text()
    assert "| lora |" in text and "Not evaluated yet: decoder_only" in text and "majority class (a)" in text
