"""The comparison table: mean ± std over seeds, intervals against the reference, verdicts only beyond the noise."""

import json

import numpy as np
import pytest

from samsar.config import Params
from samsar.evaluation.runner import tiles_path
from samsar.reporting.comparison import comparison_table, degenerate_columns, degenerate_note, write_comparison
from samsar.uncertainty import TileConfusions

CLASSES = ("a", "b")


def _metrics(miou, params, seconds, size, std=0.01):
    return {"mIoU": miou, "mIoU_std": std, "mF1": miou + 0.1, "OA": 0.8, "kappa": miou - 0.1, "val_mIoU": miou,
            "n_trainable_params": params, "artifact_bytes": size, "train_seconds": seconds,
            "ignore_background": {"mIoU": miou - 0.05}, "seeds": [0, 1, 2]}


def _tiles(accuracy: np.ndarray) -> TileConfusions:
    """Per-(seed, tile) two-class confusions with the given accuracy (1000 pixels per class and tile)."""
    s, t = accuracy.shape
    cm = np.zeros((s, t, 2, 2), dtype=np.int64)
    right = np.round(1000 * accuracy).astype(np.int64)
    cm[..., 0, 0] = cm[..., 1, 1] = right
    cm[..., 0, 1] = cm[..., 1, 0] = 1000 - right
    return TileConfusions(cm, tuple(range(s)), tuple(f"t{i}" for i in range(t)), CLASSES)


def _project(tmp_path, variants):
    return Params.model_validate({
        "data": {"classes": [{"name": n, "color": [0, 0, 0]} for n in CLASSES], "background": None},
        "variants": variants, "root": str(tmp_path),
    })


def test_mean_std_cost_marks_and_majority_row():
    rows = {"small": _metrics(0.6, 1000, 50.0, 4096), "big": {**_metrics(0.7, 9000, 80.0, 8192), "cut_short": True}}
    table = comparison_table(rows, {"mIoU": 0.1, "mF1": 0.1, "OA": 0.4, "kappa": 0.0, "class": "bg"}, reference="small")
    small = next(line for line in table.splitlines() if line.startswith("| small"))
    big = next(line for line in table.splitlines() if line.startswith("| big"))
    assert "**1,000**" in small and "**4.0 KiB**" in small and "0.600 ± 0.010" in small and "reference" in small
    assert "0.700 ± 0.010" in big and "**0.700" not in big and "9,000" in big and "**9,000**" not in big
    assert big.startswith("| big †")  # cut short by the wall-time guard
    majority = table.splitlines()[-1]
    assert majority.startswith("| majority class (bg)") and "0.100" in majority and "**" not in majority


def test_better_only_when_the_interval_excludes_zero(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.uniform(0.75, 0.85, size=(1, 20))
    archives = {
        "decoder_only": _tiles(base + rng.normal(0, 0.01, (3, 20))),
        "lora": _tiles(base + 0.08 + rng.normal(0, 0.01, (3, 20))),  # clearly better on every tile
        "adapter": _tiles(base + rng.normal(0, 0.01, (3, 20))),  # same distribution: within noise
    }
    params = _project(tmp_path, list(archives))
    params.metrics_path("lora").parent.mkdir(parents=True)
    for name, tiles in archives.items():
        tiles.save(tiles_path(params, name))
        per_seed = [float(np.mean([_miou(tiles.confusion[s].sum(0))])) for s in range(3)]
        params.metrics_path(name).write_text(json.dumps({**_metrics(float(np.mean(per_seed)), 10, 1.0, 10), "n_test_tiles": 20}))
    text = write_comparison(params).read_text()
    lora = next(line for line in text.splitlines() if line.startswith("| lora |"))
    adapter = next(line for line in text.splitlines() if line.startswith("| adapter |"))
    assert lora.rstrip().endswith("| better |") and adapter.rstrip().endswith("| within noise |")
    assert "**lora** has the highest mean test mIoU" in text
    assert "95 % paired bootstrap" in text and "± " in text


def _miou(cm):
    tp = np.diag(cm)
    return float(np.mean(tp / (cm.sum(0) + cm.sum(1) - tp)))


def test_write_comparison_needs_metrics(tmp_path):
    params = _project(tmp_path, ["decoder_only", "lora"])
    with pytest.raises(FileNotFoundError, match="samsar evaluate"):
        write_comparison(params)
    params.metrics_path("lora").parent.mkdir(parents=True)
    params.metrics_path("lora").write_text(json.dumps({**_metrics(0.5, 10, 1.0, 10), "n_test_tiles": 3,
                                                       "majority": {"mIoU": 0.2}, "majority_class": "a"}))
    text = write_comparison(params).read_text()
    assert "| lora |" in text and "Not evaluated yet: decoder_only" in text and "majority class (a)" in text


def _ships(miou, ship_iou, recall, size):
    """A background + ship variant: ignore-bg mIoU equals the ship recall."""
    return {**_metrics(miou, 1000, 10.0, size), "ignore_background": {"mIoU": recall},
            "per_class_iou": {"background": 0.99, "ship": ship_iou}, "mF1_reference": miou + 0.2}


def test_degenerate_ignore_background_column_crowns_nobody():
    # parser over-predicts ships: worst ship IoU, best recall (= ignore-bg mIoU with one object class)
    rows = {"cwsam": _ships(0.80, 0.61, 0.70, 4096), "parser": _ships(0.70, 0.41, 0.95, 8192)}
    table = comparison_table(rows, None, reference="cwsam", n_foreground=1)
    header = table.splitlines()[0]
    assert "mIoU ignore-bg ‡" in header and "mF1 (reference)" in header
    assert "**0.950" not in table and "**0.700" not in table  # no winner on the degenerate column
    assert "**4.0 KiB**" in table  # real cost differences are still marked
    note = degenerate_note(degenerate_columns(rows, n_foreground=1))
    assert "`mIoU ignore-bg`" in note and "recall" in note and "no value is marked best" in note
    # with two object classes the column is meaningful again
    assert "ignore_background.mIoU" not in degenerate_columns(rows, n_foreground=2)
    assert "mIoU ignore-bg ‡" not in comparison_table(rows, None, reference="cwsam", n_foreground=2)


def test_equal_or_undefined_cost_columns_are_not_marked():
    rows = {"a": _metrics(0.6, 500, 5.0, 1024), "b": _metrics(0.7, 500, 6.0, 2048)}
    rows["a"]["artifact_bytes"] = rows["b"]["artifact_bytes"] = None
    table = comparison_table(rows, None, reference="a")
    assert "**500**" not in table and "trainable params ‡" in table and "artifact size ‡" in table
    reasons = degenerate_columns(rows)
    assert reasons["n_trainable_params"] == "equal for every variant"
    assert reasons["artifact_bytes"] == "undefined for every variant"


def test_write_comparison_notes_the_degenerate_column(tmp_path):
    params = Params.model_validate({
        "data": {"classes": [{"name": "background", "color": [0, 0, 0]}, {"name": "ship", "color": [255, 0, 0]}],
                 "background": "background"},
        "variants": ["cwsam", "parser"], "root": str(tmp_path),
    })
    params.metrics_path("cwsam").parent.mkdir(parents=True)
    params.metrics_path("cwsam").write_text(json.dumps(_ships(0.80, 0.61, 0.70, 4096)))
    params.metrics_path("parser").write_text(json.dumps(_ships(0.70, 0.41, 0.95, 8192)))
    text = write_comparison(params).read_text()
    assert "mIoU ignore-bg ‡" in text and "‡ `mIoU ignore-bg`: with 1 non-background class" in text
    assert "**0.950" not in text


def _ship_task(tmp_path, object_classes):
    return Params.model_validate({
        "data": {"classes": [{"name": "background", "color": [0, 0, 0]}, {"name": "ship", "color": [255, 0, 0]}],
                 "background": "background"},
        "evaluate": {"object_classes": object_classes}, "variants": ["cwsam", "parser"], "root": str(tmp_path),
    })


def _with_objects(metrics, f1):
    return {**metrics, "object_f1": {"ship": f1}, "object_f1_std": {"ship": 0.02},
            "object_precision": {"ship": f1}, "object_recall": {"ship": f1}, "object_mean_iou": {"ship": 0.7},
            "per_class_iou_std": {"background": 0.001, "ship": 0.03},
            "objects": {"ship": {"n_true_objects": 40, "missed_by_size": {"small": 5, "medium": 1, "large": 0},
                                 "false_by_size": {"small": 7, "medium": 0, "large": 1}}}}


def test_object_task_leads_with_object_f1_and_ship_iou_and_crowns_no_degenerate_column(tmp_path):
    params = _ship_task(tmp_path, ["ship"])
    params.metrics_path("cwsam").parent.mkdir(parents=True)
    params.metrics_path("cwsam").write_text(json.dumps(_with_objects(_ships(0.80, 0.61, 0.70, 4096), 0.66)))
    params.metrics_path("parser").write_text(json.dumps(_with_objects(_ships(0.70, 0.41, 0.95, 8192), 0.35)))
    text = write_comparison(params).read_text()
    header = next(line for line in text.splitlines() if line.startswith("| variant | "))
    assert header.split(" | ")[1:3] == ["ship object F1", "ship IoU"]  # leads the table
    parser = next(line for line in text.splitlines() if line.startswith("| parser |"))
    assert parser.split(" | ")[1:3] == ["0.350 ± 0.020", "0.410 ± 0.030"]
    assert "mIoU ignore-bg ‡" in header and "**0.950" not in text  # degenerate: its top value is not marked
    assert "**0.660" not in text and "**0.610" not in text  # quality columns are judged by intervals, never bold
    assert "leads with the object F1" in text
    assert "## Objects" in text and "| parser | ship | 0.350 | 0.350 | 0.350 ± 0.020 | 0.700 | 40 | 5 / 1 / 0 | 7 / 0 / 1 |" in text
    assert "mBF1" not in header  # no land-cover class
    # without object classes the standard columns lead
    plain = write_comparison(_ship_task(tmp_path, [])).read_text()
    assert next(line for line in plain.splitlines() if line.startswith("| variant | ")).split(" | ")[1].startswith("trainable params")
    assert "ship object F1" not in plain and "## Objects" not in plain


def test_land_cover_task_gets_an_mbf1_column():
    from samsar.reporting.comparison import columns_for

    keys = [c.key for c in columns_for(["bg", "ship", "water", "field"], "bg", ["ship"])]
    assert keys[0] == "n_trainable_params" and "object_f1.ship" in keys and "per_class_iou.ship" in keys
    assert "mBF1" in keys and keys[-1] == "train_seconds"
    assert "object_f1.ship" not in [c.key for c in columns_for(["bg", "water"], "bg", [])]


def _write_variants(params, archives):
    params.metrics_path("x").parent.mkdir(parents=True, exist_ok=True)
    for name, tiles in archives.items():
        tiles.save(tiles_path(params, name))
        per_seed = [_miou(tiles.confusion[s].sum(0)) for s in range(tiles.confusion.shape[0])]
        params.metrics_path(name).write_text(json.dumps({**_metrics(float(np.mean(per_seed)), 10, 1.0, 10),
                                                         "per_class_iou": {"a": 0.5, "b": 0.5}}))


def _row(text, name):
    return next(line for line in text.splitlines() if line.startswith(f"| {name} "))


def test_box_rows_are_labelled_and_judged_only_against_the_box_baseline(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.uniform(0.70, 0.75, size=(1, 20))
    archives = {  # the box head's oracle prompts make it look far better than every classwise variant
        "decoder_only": _tiles(base + rng.normal(0, 0.01, (3, 20))),
        "lora": _tiles(base + rng.normal(0, 0.01, (3, 20))),
        "decoder_only-box": _tiles(base + 0.2 + rng.normal(0, 0.01, (3, 20))),
        "lora-box": _tiles(base + 0.2 + rng.normal(0, 0.01, (3, 20))),
    }
    params = _project(tmp_path, list(archives))
    _write_variants(params, archives)
    text = write_comparison(params).read_text()
    assert "§ prompted with ground-truth boxes: not comparable with the classwise head" in text
    assert _row(text, "lora").rstrip().endswith("| within noise |")  # against decoder_only, not the box rows
    assert _row(text, "decoder_only").rstrip().endswith("| reference | - |")
    assert _row(text, "lora-box §").rstrip().endswith("| within noise |")  # against decoder_only-box
    assert _row(text, "decoder_only-box §").rstrip().endswith("| reference | - |")
    verdicts = [line.rsplit("|", 2)[-2].strip() for line in text.split("## Per-class")[0].splitlines()
                if line.startswith("| ") and "§" in line or line.startswith(("| lora ", "| decoder_only "))]
    assert "better" not in verdicts and len(verdicts) == 4  # +0.2 over the classwise rows is never a verdict
    assert "Δ mIoU vs decoder_only-box" in text and "### Box-prompt head" in text
    assert _row(text.split("## Per-class test IoU")[1], "lora-box §")  # labelled in every table
    pairwise = text.split("## Pairwise")[1]
    assert "| lora-box | ≈" in pairwise and "lora-box |" not in pairwise.split("| lora-box |")[0]
    assert all("decoder_only-box" not in line for line in pairwise.splitlines() if line.startswith("| lora |"))


def test_box_rows_without_a_box_baseline_get_no_verdict(tmp_path):
    rng = np.random.default_rng(1)
    base = rng.uniform(0.70, 0.75, size=(1, 20))
    archives = {"decoder_only": _tiles(base + rng.normal(0, 0.01, (3, 20))),
                "lora-box": _tiles(base + 0.2 + rng.normal(0, 0.01, (3, 20)))}
    params = _project(tmp_path, list(archives))
    _write_variants(params, archives)
    text = write_comparison(params).read_text()
    assert _row(text, "lora-box §").rstrip().endswith("| n/a | n/a |")
    assert "`decoder_only-box`, which was not evaluated: no verdicts" in text
    assert "## Pairwise" not in text  # one variant per head: nothing to pair


def test_object_counts_by_size_are_means_to_one_decimal():
    from samsar.reporting.comparison import _by_size

    assert _by_size({"small": 508 / 3, "medium": 247 / 3, "large": 3}) == "169.3 / 82.3 / 3"
    assert _by_size(None) == "n/a"
