"""`samsar predict` never destroys what it was not asked to replace; bad params, adapters and I/O
failures end in one line."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from fault_helpers import REPO, assert_one_line_error, load_test_module, samsar, samsar_in_process, tree

predict_helpers = load_test_module("inference/predict_helpers.py", "fault_predict_helpers")


@pytest.fixture(scope="module")
def adapter(tmp_path_factory) -> Path:
    """An untrained tiny adapter (64 px windows, single-band intensity input)."""
    return predict_helpers.make_adapter(tmp_path_factory.mktemp("adapter") / "adapter", predict_helpers.INTENSITY_SCALER, 64)


@pytest.fixture
def scene(tmp_path) -> Path:
    return predict_helpers.write_geotiff(tmp_path / "scene.tif", predict_helpers.speckle_scene(70, 90))


def _predict(adapter, scene, output, *extra):
    return samsar_in_process("predict", "--model", adapter, "-i", scene, "-o", output, "--device", "cpu",
                             "--params", scene.parent / "no-params.yaml", *extra)


@pytest.mark.fault("Data loss", "`predict --output` is an existing directory", "exit 1: `<dir>: is a directory; give --output a file path`; the directory and its files are untouched")
def test_output_is_a_directory(adapter, scene, tmp_path):
    results = tmp_path / "res"
    results.mkdir()
    (results / "keep.txt").write_text("user data")
    before = tree(tmp_path)
    assert_one_line_error(_predict(adapter, scene, results), "res: is a directory")
    assert tree(tmp_path) == before


@pytest.mark.fault("Data loss", "`predict --output` equal to `--input`", "exit 1: `<scene>: is the input scene; choose another --output`; the scene is byte-identical")
def test_output_is_the_input(adapter, scene, tmp_path):
    before = tree(tmp_path)
    assert_one_line_error(_predict(adapter, scene, scene, "--overwrite"), "is the input scene")
    assert tree(tmp_path) == before


@pytest.mark.fault("Data loss", "`predict --output` inside the dataset that holds the input", "exit 1: `<output>: is inside the dataset <folder> that holds the input; write the output outside it`; the dataset is untouched")
def test_output_inside_the_input_dataset(adapter, tmp_path):
    dataset = tmp_path / "dataset"
    (dataset / "images").mkdir(parents=True)
    (dataset / "masks").mkdir()
    scene = predict_helpers.write_geotiff(dataset / "images" / "chip.tif", predict_helpers.speckle_scene(70, 90))
    params = tmp_path / "project" / "params.yaml"
    params.parent.mkdir()
    params.write_text(yaml.safe_dump({"data": {"source": "folder", "folder": {"root": str(dataset)},
                                               "classes": [{"name": n, "color": list(c)} for n, c in
                                                           zip(predict_helpers.CLASS_NAMES, predict_helpers.CLASS_COLORS)],
                                               "background": None}}))
    before = tree(dataset)
    result = samsar_in_process("predict", "--model", adapter, "-i", scene, "-o", dataset / "masks" / "chip.tif",
                               "--device", "cpu", "--params", params)
    assert_one_line_error(result, "is inside the dataset", str(dataset))
    assert tree(dataset) == before


@pytest.mark.fault("Data loss", "`predict` onto existing output files without `--overwrite`", "exit 1: `<file>: already exists; pass --overwrite to replace it`; the files are untouched; with `--overwrite` all are replaced")
def test_existing_output_needs_overwrite(adapter, scene, tmp_path):
    output = tmp_path / "out" / "classes.tif"
    assert _predict(adapter, scene, output).returncode == 0
    previous = tree(output.parent)
    assert_one_line_error(_predict(adapter, scene, output), "classes.tif: already exists; pass --overwrite")
    assert tree(output.parent) == previous
    output.write_bytes(b"an older class map")
    assert _predict(adapter, scene, output, "--overwrite").returncode == 0
    assert output.read_bytes()[:2] in (b"II", b"MM") and sorted(tree(output.parent)) == sorted(previous)


@pytest.mark.fault("Faults", "disk full while `predict --overwrite` writes (a write raises ENOSPC)", "exit 1: `<output>: No space left on device; free some space or write elsewhere`; the earlier outputs are byte-identical, no temporary files remain")
def test_disk_full_during_predict_keeps_previous_outputs(adapter, scene, tmp_path, monkeypatch):
    from samsar.inference import raster

    output = tmp_path / "out" / "classes.tif"
    assert _predict(adapter, scene, output).returncode == 0
    previous = tree(output.parent)

    def full_disk(self, block):
        raise OSError(errno.ENOSPC, "No space left on device", str(self._path))

    monkeypatch.setattr(raster.RowWriter, "write", full_disk)
    result = _predict(adapter, scene, output, "--overwrite")
    assert_one_line_error(result, f"{output}: No space left on device; free some space or write elsewhere")
    assert tree(output.parent) == previous


FULL_DISK_SCRIPT = """
set -e
mount -t tmpfs -o size={size}k tmpfs {disk}
cp {previous}/* {disk}/
set +e
{python} -m samsar.cli predict --model {adapter} -i {scene} -o {disk}/classes.tif --device cpu --params {disk}/none.yaml --overwrite
echo "rc=$?"
cd {disk} && sha256sum * && ls -A
"""


@pytest.mark.fault("Faults", "a real full disk (a small tmpfs) under `predict --overwrite`", "exit 1: `<output>: written incompletely (disk full or I/O error); free some space or write elsewhere` when the class map's tiles do not fit (GDAL only warns, so the map is read back before it replaces anything; it used to exit 0 with a truncated map), or `<output folder>: No space left on device; ...` when another output runs out first; the earlier outputs are byte-identical, no temporary files remain")
def test_real_full_disk_keeps_previous_outputs(adapter, tmp_path):
    import hashlib
    import subprocess
    import sys

    probe = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs tmpfs {tmp_path}"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs in a user namespace here (unshare -rm: {probe.stderr.strip()})")
    scene = predict_helpers.write_geotiff(tmp_path / "scene.tif", predict_helpers.speckle_scene(700, 900))
    previous = tmp_path / "previous"
    assert _predict(adapter, scene, previous / "classes.tif").returncode == 0
    sums = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in previous.iterdir()}
    # Room for the earlier outputs and the new preview and area table, not the new class map (written
    # twice: a tiled staging file, then its COG copy).
    pages = lambda path: -(-path.stat().st_size // 4096)  # noqa: E731
    size_kb = 4 * (sum(pages(p) for p in previous.iterdir()) + pages(previous / "classes_preview.png")
                   + pages(previous / "classes_areas.csv") + 2)
    disk = tmp_path / "disk"
    disk.mkdir()
    script = FULL_DISK_SCRIPT.format(size=size_kb, disk=disk, previous=previous, python=sys.executable,
                                     adapter=adapter, scene=scene)
    result = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=300,
                            env={**__import__("os").environ, "PYTHONPATH": str(REPO / "src")})
    assert "rc=1" in result.stdout, result.stdout + result.stderr
    line = assert_one_line_error(subprocess.CompletedProcess([], 1, result.stdout, result.stderr),
                                 "; free some space or write elsewhere")
    # Which write runs out first depends on GDAL's caching: the class map (read back) or the folder's next file.
    assert (f"{disk}/classes.tif: written incompletely (disk full or I/O error)" in line
            or f"{disk}: No space left on device" in line), line
    listing = result.stdout.split("rc=1", 1)[1].split()
    after = dict(zip(listing[1::2][: len(sums)], listing[0::2][: len(sums)]))
    assert after == sums, "earlier outputs changed"
    assert sorted(listing[2 * len(sums):]) == sorted(sums), f"leftovers: {listing}"


@pytest.mark.fault("One-line errors", "unwritable output folder (permission denied)", "exit 1: `<output>: Permission denied; check the permissions or write elsewhere`; nothing written")
def test_unwritable_output(adapter, scene, tmp_path, monkeypatch):
    import tempfile

    locked = tmp_path / "locked"
    locked.mkdir()
    real_mkdtemp = tempfile.mkdtemp

    def denied(suffix=None, prefix=None, dir=None):  # root ignores mode bits, so the refusal is injected
        if dir is not None and Path(dir) == locked:
            raise PermissionError(errno.EACCES, "Permission denied", str(Path(dir) / "tmpx"))
        return real_mkdtemp(suffix, prefix, dir)

    monkeypatch.setattr(tempfile, "mkdtemp", denied)
    result = _predict(adapter, scene, locked / "classes.tif")
    line = assert_one_line_error(result, "Permission denied; check the permissions or write elsewhere")
    assert str(locked / "classes.tif") in line
    assert list(locked.iterdir()) == []


@pytest.mark.fault("One-line errors", "corrupt `adapter.safetensors` (truncated)", "exit 1: `<file>: unreadable (...); the file is truncated or corrupt: copy it again or retrain the variant`; no output written")
def test_corrupt_adapter_tensors(adapter, scene, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(adapter, broken)
    tensors = broken / "adapter.safetensors"
    tensors.write_bytes(tensors.read_bytes()[:100])
    result = _predict(broken, scene, tmp_path / "classes.tif")
    assert_one_line_error(result, "adapter.safetensors: unreadable", "truncated or corrupt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken", "scene.tif"]


def _params_with(tmp_path, edit) -> Path:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    edit(raw)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.fault("One-line errors", "`model.image_size: 250` (not a multiple of 16)", "exit 2 before any work: `params.yaml: model.image_size: must be a multiple of SAM's 16 px patch, e.g. 240 or 256`")
def test_image_size_not_multiple_of_16(tmp_path):
    params = _params_with(tmp_path, lambda raw: raw["model"].update(image_size=250))
    result = samsar("train", "--variant", "cwsam", "--params", params, cwd=tmp_path)
    assert_one_line_error(result, "params.yaml: model.image_size: must be a multiple of SAM's 16 px patch, e.g. 240 or 256", code=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


@pytest.mark.fault("One-line errors", "`train.batch_size: 0`", "exit 2 before any work: `params.yaml: train.batch_size: Input should be greater than or equal to 1 (got 0)`")
def test_batch_size_zero(tmp_path):
    params = _params_with(tmp_path, lambda raw: raw["train"].update(batch_size=0))
    result = samsar("train", "--variant", "cwsam", "--params", params, cwd=tmp_path)
    assert_one_line_error(result, "train.batch_size: Input should be greater than or equal to 1 (got 0)", code=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


@pytest.mark.fault("One-line errors", "several bad params at once (shares, percentiles, a LoRA rank, a missing source folder)", "exit 2: one line listing every key with its problem and fix, e.g. `preprocess.split: val + test = 1.05 leaves no train share; ...`")
def test_every_bad_param_in_one_line(tmp_path):
    def edit(raw):
        raw["preprocess"]["split"].update(val=0.15, test=0.9)
        raw["preprocess"]["clip_percentiles"] = [99, 1]
        raw["variant_options"]["lora"]["rank"] = 0
    params = _params_with(tmp_path, edit)
    line = assert_one_line_error(samsar_in_process("validate", "--params", params), code=2)
    for key in ("preprocess.split: val + test = 1.05 leaves no train share", "preprocess.clip_percentiles: ",
                "variant_options.lora.rank: "):
        assert key in line, line
    missing = _params_with(tmp_path, lambda raw: raw["data"].update(source="folder", folder={"root": "nowhere"}))
    assert_one_line_error(samsar_in_process("prepare", "--params", missing),
                          f"data.folder.root: {tmp_path / 'nowhere'} does not exist", code=2)


@pytest.mark.fault("Silently wrong", "a typo in `variants` (`cwsamm`)", "exit 2 at params load for every stage: `variants: unknown variant 'cwsamm'; did you mean 'cwsam'? known: ...`")
def test_variant_typo(tmp_path):
    params = _params_with(tmp_path, lambda raw: raw["variants"].append("cwsamm"))
    assert_one_line_error(samsar_in_process("compare", "--params", params), "variants: unknown variant 'cwsamm'; did you mean 'cwsam'?", code=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


@pytest.mark.fault("One-line errors", "`model.checkpoint` that is not a SAM checkpoint (garbage bytes, or a pickle of code objects)", "exit 1: `<file>: not a readable tensor-only checkpoint (truncated, corrupt, or pickling objects other than tensors, which are never loaded); ...`; no variant output is written")
@pytest.mark.parametrize("payload", ["garbage", "pickle"])
def test_bad_base_checkpoint(tmp_path, payload):
    import torch

    checkpoint = tmp_path / "sam.pth"
    if payload == "garbage":
        checkpoint.write_bytes(b"not a checkpoint" * 64)
    else:
        torch.save({"image_encoder.patch_embed.proj.weight": np.ones(3), "hook": Path("/")}, checkpoint)

    def small(raw):
        raw["model"].update(checkpoint=str(checkpoint), image_size=64)
        raw["data"]["synthetic"].update(n_scenes=4, scene_size=128)
        raw["preprocess"].update(tile_size=64, stride=64, split={"val": 0.25, "test": 0.25, "block_size": 64, "seed": 0})
        raw["tracking"]["enabled"] = False
    params = _params_with(tmp_path, small)
    for stage in ("prepare", "preprocess", "pretrain"):  # with a real checkpoint, pretrain only records it
        assert samsar_in_process(stage, "--params", params).returncode == 0
    result = samsar("train", "--variant", "decoder_only", "--params", params, "--no-flow", cwd=tmp_path)
    assert_one_line_error(result, "sam.pth: not a readable tensor-only checkpoint")
    assert not (tmp_path / "models" / "decoder_only").exists()


@pytest.mark.fault("Faults", "`samsar predict --params` of a project whose source data or base checkpoint path is gone (a copied project)", "predict, register and the other commands that never read them run; only prepare, preprocess, pretrain, train and evaluate stop with `data.folder.root: <path> does not exist; ...` (exit 2)")
def test_missing_inputs_only_stop_the_commands_that_read_them(adapter, scene, tmp_path):
    params = _params_with(tmp_path, lambda raw: raw["data"].update(source="folder", folder={"root": "moved-away"}))
    result = samsar_in_process("predict", "--model", adapter, "-i", scene, "-o", tmp_path / "classes.tif",
                               "--device", "cpu", "--params", params)
    assert result.returncode == 0, result.stderr
    assert_one_line_error(samsar_in_process("preprocess", "--params", params), "data.folder.root: ", "does not exist", code=2)
