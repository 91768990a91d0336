"""results/curves/<variant>.csv: the git-tracked training curve DVC overlays across variants."""

from __future__ import annotations

import csv

from samsar.training.curves import CURVE_FIELDS, curve_path, curve_rows, write_curve, write_val_curves
from samsar.training.loop import train_variant


def _row(seed, epoch, step, loss, miou):
    return {"seed": str(seed), "epoch": str(epoch), "step": str(step), "train_loss": str(loss), "val_mIoU": str(miou),
            "lr": "0.001", "seconds": "1.0"}


def test_one_row_per_step_with_means_over_the_seeds_that_reached_it():
    history = [_row(0, 0, 5, 1.0, 0.2), _row(0, 1, 10, 0.8, 0.4), _row(1, 0, 5, 1.2, 0.4), _row(1, 1, 10, 0.6, "nan"),
               _row(0, 2, 15, 0.5, 0.5)]  # seed 1 stopped early; its last validation undefined
    rows = curve_rows(history)
    assert [r["step"] for r in rows] == [5, 10, 15] and [r["n_seeds"] for r in rows] == [2, 2, 1]
    assert abs(rows[0]["val_mIoU"] - 0.3) < 1e-12 and abs(rows[0]["train_loss"] - 1.1) < 1e-12
    assert rows[1]["val_mIoU"] == 0.4  # the undefined value is left out of the mean, not counted as 0
    assert rows[2]["val_mIoU_std"] is None  # one seed: no spread


def test_training_writes_the_curve_under_results(tiny_project):
    params = tiny_project({"train": {"epochs": 2, "seeds": [0, 1]}})
    train_variant(params, "decoder_only")
    path = curve_path(params, "decoder_only")
    assert path == params.root / "results" / "curves" / "decoder_only.csv"
    with path.open() as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert tuple(reader.fieldnames) == CURVE_FIELDS
    assert len(rows) == 2 and all(r["n_seeds"] == "2" for r in rows)  # one validation per epoch, both seeds
    assert all(0.0 <= float(r["val_mIoU"]) <= 1.0 and "nan" not in r.values() for r in rows)
    assert int(rows[0]["step"]) < int(rows[1]["step"])


def test_write_curve_leaves_undefined_cells_empty(tiny_project):
    params = tiny_project()
    path = write_curve(params, "lora", [_row(0, 0, 3, 0.9, "nan")])
    assert path.read_text().splitlines()[1] == "3,0,,,0.9,1"


def test_val_curves_table_has_one_column_per_variant(tiny_project):
    params = tiny_project({"variants": ["lora", "decoder_only"]})
    write_curve(params, "lora", [_row(0, 0, 5, 0.9, 0.25), _row(0, 1, 10, 0.8, 0.5)])
    write_curve(params, "decoder_only", [_row(0, 0, 5, 0.9, 0.125)])  # stopped early
    path = write_val_curves(params)
    assert path == params.root / "results" / "val_curves.csv"
    assert path.read_text().splitlines() == ["step,lora,decoder_only", "5,0.25,0.125", "10,0.5,"]


def test_val_curves_rebuild_an_old_variant_from_its_history_and_leave_an_untrained_one_empty(tiny_project):
    from samsar.training.curves import write_val_curves

    params = tiny_project({"variants": ["lora", "decoder_only", "cwsam"]})
    write_curve(params, "lora", [_row(0, 0, 5, 0.9, 0.25)])
    history = params.variant_dir("decoder_only") / "history.csv"  # trained before train wrote results/curves/
    history.parent.mkdir(parents=True)
    history.write_text("seed,epoch,step,train_loss,val_mIoU,lr,seconds\n0,0,5,0.9,0.5,0.001,1.0\n1,0,5,0.8,0.25,0.001,1.0\n")
    lines = write_val_curves(params).read_text().splitlines()
    assert lines == ["step,lora,decoder_only,cwsam", "5,0.25,0.375,"]
