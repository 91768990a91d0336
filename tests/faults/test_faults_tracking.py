"""Tracking faults: the MLflow UI's server, registry loads without a store, temporary copies, absent classes.

Subprocess tests run ``python -m samsar.cli`` as a user does (signals, $HOME, $TMPDIR, the working
directory); the others run the command in this process.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from fault_helpers import assert_one_line_error, load_test_module, samsar, samsar_in_process, tree

services = load_test_module("tracking/service_processes.py", "fault_tracking_services")
predict_helpers = load_test_module("inference/predict_helpers.py", "fault_tracking_predict_helpers")
registry_helpers = load_test_module("tracking/test_registry.py", "fault_tracking_registry_helpers")

UNSET = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "DVC_ROOT")


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Every store is the project's own (no server or DVC root of the machine running the tests), and temporary
    files of this process and its children stay in tmp_path (MLflow leaves a lock file per new store there)."""
    for key in UNSET:
        monkeypatch.delenv(key, raising=False)
    temp = tmp_path / "process-tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    monkeypatch.setenv("TMPDIR", str(temp))


def write_project(root: Path, classes=predict_helpers.CLASS_NAMES, store: bool = False, **top) -> Path:
    """``root/params.yaml`` of a small project (dataset ``reg``); ``store``: with an empty tracking store."""
    colors = [[40 * i, 0, 0] for i in range(len(classes))]
    doc = {"data": {"name": "reg", "classes": [{"name": n, "color": c} for n, c in zip(classes, colors)], "background": None},
           "tracking": {"system_metrics": False}, **top}
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(doc))
    if store:
        from mlflow import MlflowClient

        (root / "mlflow").mkdir()
        MlflowClient(f"sqlite:///{root / 'mlflow' / 'mlflow.db'}").search_experiments()  # creates the schema
    return root / "params.yaml"


def scene(path: Path, bands: int = 1) -> Path:
    data = predict_helpers.speckle_scene(70, 90)
    return predict_helpers.write_geotiff(path, data if bands == 1 else np.stack([data] * bands, axis=-1))


# --- samsar ui -----------------------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    return [int(stat.parent.name) for stat in Path("/proc").glob("[0-9]*/stat") if _stat(stat)[1] == pid]


def _running_in_group(pgid: int) -> list[int]:
    """Pids of the group's processes that still run (a zombie has exited; this container's init leaves them)."""
    return [int(stat.parent.name) for stat in Path("/proc").glob("[0-9]*/stat")
            if (fields := _stat(stat))[2] == pgid and fields[0] != "Z"]


def _stat(path: Path) -> tuple[str, int, int]:
    """(state, ppid, pgrp) of /proc/<pid>/stat; ("", -1, -1) when the process is gone."""
    try:
        state, ppid, pgrp = path.read_text().rsplit(")", 1)[1].split()[:3]
    except (OSError, IndexError):
        return "", -1, -1
    return state, int(ppid), int(pgrp)


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="reads the process table from /proc (Linux)")
@pytest.mark.fault("Faults", "`samsar ui` stopped with SIGTERM while its MLflow server runs",
                   "exit 143 `interrupted by SIGTERM` within seconds; the server runs in its own process group and every process "
                   "of it (mlflow server, uvicorn, its worker, the job runners) is stopped (SIGTERM, SIGKILL after 5 s); the port is closed")
def test_ui_stopped_with_sigterm_stops_its_whole_server(tmp_path):
    ui, port, log_path = _start_ui(write_project(tmp_path / "project", store=True), tmp_path)
    group = None
    try:
        (server,) = _children(ui.pid)
        group = os.getpgid(server)
        assert group == server != os.getpgid(ui.pid)  # the server leads its own group
        members = _running_in_group(group)
        assert len(members) >= 2, members  # mlflow server and uvicorn (and MLflow's job runners)

        ui.send_signal(signal.SIGTERM)
        started = time.monotonic()
        code = ui.wait(timeout=60)
        seconds = time.monotonic() - started
        output = log_path.read_text()
        assert code == 128 + signal.SIGTERM, output
        assert seconds < 15, f"samsar ui took {seconds:.1f} s to stop"
        assert "interrupted by SIGTERM" in output and "Traceback" not in output, output
        assert _running_in_group(group) == [], "processes of the server's group survived samsar ui"
        assert not any(_stat(Path(f"/proc/{pid}/stat"))[0] not in ("", "Z") for pid in members)
        assert not _port_open(port)
    finally:
        if ui.poll() is None:
            ui.kill()
            ui.wait()
        if group is not None and _running_in_group(group):
            os.killpg(group, signal.SIGKILL)


def _start_ui(params: Path, tmp_path: Path) -> tuple[subprocess.Popen, int, Path]:
    """``samsar ui`` answering HTTP on a free port (another, if some other process took the port meanwhile)."""
    env = {key: value for key, value in os.environ.items() if key not in (*UNSET, "SAMSAR_DEBUG")}
    for attempt in range(3):
        port, log_path = services.free_port(), tmp_path / f"ui-{attempt}.log"
        with log_path.open("w") as log:
            ui = subprocess.Popen([sys.executable, "-m", "samsar.cli", "ui", "--params", str(params), "--port", str(port)],
                                  cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            services.wait_for_http(f"http://127.0.0.1:{port}/health", ui, timeout=240)
            return ui, port, log_path
        except (RuntimeError, TimeoutError) as exc:
            if ui.poll() is None:
                ui.kill()
                ui.wait()
            if "in use" not in log_path.read_text():
                pytest.fail(f"samsar ui did not start: {exc}\n{log_path.read_text()}")
    pytest.fail("no free port for samsar ui after 3 tries")


@pytest.mark.fault("One-line errors", "`samsar ui` on a project with no tracking store yet",
                   "exit 1, one line: no tracking store at <project>/mlflow/mlflow.db; run `samsar register` first ...; "
                   "no store is created")
def test_ui_without_a_store_creates_none(tmp_path):
    params = write_project(tmp_path / "project")
    before = tree(params.parent)
    result = samsar_in_process("ui", "--params", params, "--port", services.free_port())
    assert_one_line_error(result, f"no tracking store at {params.parent / 'mlflow' / 'mlflow.db'}", "samsar register")
    assert tree(params.parent) == before and not (params.parent / "mlflow").exists()


@pytest.mark.fault("One-line errors", "`samsar ui --port P` while another process listens on P",
                   "exit 1, one line: port P on 127.0.0.1 is in use (Address already in use); pass another --port; "
                   "no server is started (mlflow server itself would exit 0 with nothing served)")
def test_ui_on_a_taken_port(tmp_path):
    params = write_project(tmp_path / "project", store=True)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = samsar_in_process("ui", "--params", params, "--port", port)
    assert_one_line_error(result, f"port {port} on 127.0.0.1 is in use", "pass another --port")


# --- registry models without a store --------------------------------------------------------------------


@pytest.mark.fault("One-line errors", "`samsar predict --model models:/...` with no params file and no $MLFLOW_TRACKING_URI",
                   "exit 1, one line: models:/<name>@<alias>: no tracking store to load it from: no params file (params.yaml in "
                   "<cwd> or --params) and $MLFLOW_TRACKING_URI is not set; pass --params ... or set MLFLOW_TRACKING_URI; "
                   "nothing written to the working directory, $HOME or $TMPDIR (no ./mlflow.db)")
def test_registry_uri_without_params_writes_nothing(tmp_path):
    cwd, home, tmp = tmp_path / "cwd", tmp_path / "home", tmp_path / "tmp"
    for folder in (cwd, home, tmp):
        folder.mkdir()
    source = scene(tmp_path / "scene.tif")
    result = samsar("predict", "--model", "models:/samsar-reg@champion", "-i", source, "-o", tmp_path / "out" / "classes.tif",
                    "--device", "cpu", cwd=cwd, env={"HOME": str(home), "TMPDIR": str(tmp)})
    assert_one_line_error(result, "models:/samsar-reg@champion: no tracking store to load it from",
                          f"params.yaml in {cwd}", "--params", "MLFLOW_TRACKING_URI")
    assert tree(cwd) == {} and tree(home) == {} and tree(tmp) == {}
    assert not (tmp_path / "out").exists()


@pytest.mark.fault("One-line errors", "`samsar predict --model models:/...` with params of a project that has no tracking store",
                   "exit 1, one line: models:/<name>@<alias>: no tracking store at <project>/mlflow/mlflow.db; "
                   "run `samsar register` first ...; no empty store is created")
def test_registry_uri_with_a_missing_store_creates_none(tmp_path):
    params = write_project(tmp_path / "project")
    source = scene(tmp_path / "scene.tif")
    before = tree(params.parent)
    result = samsar_in_process("predict", "--model", "models:/samsar-reg@champion", "-i", source,
                               "-o", tmp_path / "classes.tif", "--device", "cpu", "--params", params)
    assert_one_line_error(result, f"models:/samsar-reg@champion: no tracking store at {params.parent / 'mlflow' / 'mlflow.db'}",
                          "run `samsar register` first")
    assert tree(params.parent) == before and not (params.parent / "mlflow").exists()


# --- temporary copies of registry models ----------------------------------------------------------------


@pytest.fixture
def registered_champion(tmp_path, intensity_adapter_dir):
    """A project whose registered model ``samsar-reg`` has alias ``champion`` on a tiny untrained adapter."""
    from samsar.config import load_params
    from samsar.tracking import store
    from samsar.tracking.pyfunc import log_adapter_model

    path = write_project(tmp_path / "project", store=True)
    params = load_params(path)
    client = store.client(params)
    run_id = client.create_run(store.ensure_experiment(client, params)).info.run_id
    model = client.get_logged_model(log_adapter_model(params, run_id, intensity_adapter_dir).removeprefix("models:/"))
    client.set_terminated(run_id)
    client.create_registered_model("samsar-reg")
    version = client.create_model_version("samsar-reg", model.artifact_location, run_id=run_id, model_id=model.model_id)
    client.set_registered_model_alias("samsar-reg", "champion", version.version)
    return path


@pytest.fixture
def intensity_adapter_dir(tmp_path):
    return predict_helpers.make_adapter(tmp_path / "adapter", predict_helpers.INTENSITY_SCALER, 64)


@pytest.mark.fault("Faults", "registry model loaded by `samsar predict`: it succeeds, fails after the download, or the alias is missing",
                   "the downloaded copy (samsar-model-*, ~15 MB with a real base) is removed every time: $TMPDIR is empty afterwards; "
                   "the failures exit 1 with one line (`has 3 band(s)`, `cannot be loaded from the tracking store <uri>`)")
def test_registry_loads_leave_no_temporary_copy(tmp_path, registered_champion):
    tmp = tmp_path / "tmp"
    tmp.mkdir()

    def predict(model, source, name):
        return samsar("predict", "--model", model, "-i", source, "-o", tmp_path / "out" / name, "--device", "cpu",
                      "--params", registered_champion, cwd=tmp_path, env={"TMPDIR": str(tmp)})

    ok = predict("models:/samsar-reg@champion", scene(tmp_path / "scene.tif"), "classes.tif")
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "out" / "classes.tif").is_file() and tree(tmp) == {}

    wrong_bands = predict("models:/samsar-reg@champion", scene(tmp_path / "rgb.tif", bands=3), "rgb_classes.tif")
    assert_one_line_error(wrong_bands, "rgb.tif: has 3 band(s)")
    assert tree(tmp) == {}

    no_alias = predict("models:/samsar-reg@nosuch", tmp_path / "scene.tif", "nosuch.tif")
    assert_one_line_error(no_alias, "models:/samsar-reg@nosuch: cannot be loaded from the tracking store sqlite:///")
    assert tree(tmp) == {} and list(tmp.iterdir()) == []


# --- absent classes ---------------------------------------------------------------------------------------


CLASSES = list(registry_helpers.CLASSES)  # building, water, background
WATER = CLASSES.index("water")


def without_water_truth(tiles, predicted: bool):
    """The archive of a test split with no water pixel; ``predicted``: the model still predicts water in places."""
    from samsar.uncertainty import TileConfusions

    cm = tiles.confusion.copy()
    cm[..., WATER, :] = 0
    if not predicted:  # it gets those pixels right instead
        for k in (0, 2):
            cm[..., k, k] += cm[..., k, WATER]
        cm[..., :, WATER] = 0
    return TileConfusions(cm, tiles.seeds, tiles.tile_ids, tiles.class_names)


def evaluated(params, variant: str, tiles, val_miou: float) -> dict:
    """What `samsar train` and `samsar evaluate` leave for ``variant`` (per-tile confusions ``tiles``): an MLflow run with a
    logged model and the tiles archive, the adapter, train_summary.json and metrics/<variant>.json with metrics computed
    by the evaluation code itself."""
    from samsar.evaluation.metrics import segmentation_metrics
    from samsar.evaluation.runner import aggregate_over_seeds, tiles_path
    from samsar.io import write_json
    from samsar.models.artifacts import save_adapter
    from samsar.models.variants import build_segmenter

    run_id = registry_helpers.fake_trained_variant(params, variant, tiles, val_miou)
    seeds = list(tiles.seeds)
    per_seed = [segmentation_metrics(tiles.confusion[s].sum(axis=0), CLASSES, "background") for s in range(len(seeds))]
    majority = segmentation_metrics(tiles.majority(CLASSES.index("background")).confusion[0].sum(axis=0), CLASSES, "background")
    metrics = {
        **aggregate_over_seeds(per_seed), "variant": variant, "seeds": seeds, "selected_seed": seeds[0],
        "val_mIoU": val_miou, "val_mIoU_std": 0.01, "cut_short": False, "n_test_tiles": len(tiles.tile_ids),
        "n_pixels": int(tiles.confusion[0].sum()),
        "majority_class": "background", "majority_mIoU": majority["mIoU"], "majority": {"mIoU": majority["mIoU"]},
        "n_trainable_params": 1000, "artifact_bytes": 4096, "train_seconds": 10.0,
    }
    write_json(params.metrics_path(variant), metrics)
    tiles.save(tiles_path(params, variant))
    segmenter = build_segmenter(variant, backbone="tiny", image_size=64, num_classes=len(CLASSES))
    save_adapter(segmenter, params.variant_dir(variant) / "adapter", {"class_names": CLASSES, "class_colors": [[0, 0, 0]] * 3,
                                                                     "scaling": predict_helpers.INTENSITY_SCALER.to_dict()})
    run = {"seed": seeds[0], "steps": 10, "step_budget": 10, "stop_reason": "epochs", "cut_short": False, "best_val_mIoU": val_miou,
           "best_epoch": 1, "train_seconds": 10.0, "device": "cpu", "world_size": 1, "mlflow_run_id": run_id}
    write_json(params.variant_dir(variant) / "train_summary.json", {
        "mlflow_run_id": run_id, "seeds": seeds, "selected_seed": seeds[0], "runs": [run], "cut_short": False,
        "n_trainable_params": 1000, "n_total_params": 100000, "best_val_mIoU": val_miou, "best_val_mIoU_std": 0.01,
    })
    return metrics


def processed_dataset(params) -> None:
    """data/processed as `samsar preprocess` describes it (dataset.json, the manifest's class counts): what the card reads."""
    import pandas as pd

    from samsar.io import write_json

    params.processed_dir.mkdir(parents=True)
    write_json(params.processed_dir / "dataset.json", {
        "classes": [{"name": n, "color": [0, 0, 0]} for n in CLASSES], "ignore_index": 255, "background": "background",
        "tile_size": 64, "scaling": predict_helpers.INTENSITY_SCALER.to_dict(), "source": "synthetic",
        "n_tiles": {"train": 4, "val": 0, "test": len(registry_helpers.TILE_IDS)},
    })
    pd.DataFrame({"split": ["train"] * 4, "tile_id": [f"train_{i}" for i in range(4)],
                  **{f"count_{n}": [count] * 4 for n, count in zip(CLASSES, (1000, 500, 3000))}}).to_parquet(params.processed_dir / "manifest.parquet")


@pytest.mark.fault("Silently wrong", "class with no pixel in the test split and none predicted (IoU null in metrics/<variant>.json)",
                   "`samsar register` registers and gates it (no TypeError): no `metric.per_class_iou.<class>` tag, the class-IoU check "
                   "compares the present classes and names it skipped; the model card and reports/comparison.md show it as `absent`, "
                   "never as 0")
def test_absent_class_is_reported_absent_everywhere(tmp_path):
    from samsar.config import load_params
    from samsar.tracking import store

    path = write_project(tmp_path / "project", classes=CLASSES, variants=["decoder_only", "lora"])
    doc = yaml.safe_load(path.read_text())
    doc["data"]["background"] = "background"
    path.write_text(yaml.safe_dump(doc))
    params = load_params(path)
    processed_dataset(params)

    # The champion predicts some water (IoU 0: present, never right); the challenger predicts none: absent.
    champion = evaluated(params, "decoder_only", without_water_truth(registry_helpers.tiles_for(0.9, noise=1), predicted=True), 0.5)
    assert champion["per_class_iou"]["water"] == 0.0
    first = samsar_in_process("register", "--params", path)
    assert first.returncode == 0, first.stdout + first.stderr
    assert json.loads(params.path("reports/registry.json").read_text())["decision"]["promoted"] is True, first.stdout
    challenger = evaluated(params, "lora", without_water_truth(registry_helpers.tiles_for(0.9, noise=2), predicted=False), 0.7)
    assert challenger["per_class_iou"]["water"] is None and challenger["ignore_background"]["per_class_iou"]["water"] is None

    result = samsar_in_process("register", "--params", path)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(params.path("reports/registry.json").read_text())
    decision = report["decision"]
    assert decision["promoted"] is True, decision["reasons"]
    assert any("(2 classes compared; skipped (absent in one of them): water)" in r for r in decision["reasons"]), decision["reasons"]
    client = store.client(params, create=False)
    tags = {v: client.get_model_version("samsar-reg", str(n)).tags for v, n in report["versions"].items()}
    assert "metric.per_class_iou.water" not in tags["lora"] and tags["lora"]["metric.per_class_iou.building"]
    assert tags["decoder_only"]["metric.per_class_iou.water"] == "0.0"

    assert samsar_in_process("card", "-v", "lora", "--params", path).returncode == 0
    card = params.path("reports/lora/model_card.md").read_text()
    assert "| water | absent | — | — | — |" in card and "*absent*: no pixel of the class in the test split" in card
    assert "Not tested on water" in card and "Weakest class: water" not in card

    assert samsar_in_process("compare", "--params", path).returncode == 0
    comparison = params.path("reports/comparison.md").read_text()
    section = comparison.split("## Per-class test IoU")[1].split("##")[0]
    rows = {cells[0]: cells[1:] for line in section.splitlines() if line.startswith("| ")
            if (cells := [c.strip() for c in line.strip("|").split("|")])}
    assert rows["variant"] == CLASSES and rows["lora"][WATER] == "absent" and rows["decoder_only"][WATER] == "0.000"
    assert "left out of the means (not counted as 0)" in comparison
