"""Mapping many scenes with one model: ``samsar predict --input DIR_OR_LIST --output OUT_DIR``.

Each scene gets the outputs of :func:`~samsar.inference.predict.predict_scene` in the output
folder (``<stem>.tif`` class map COG, ``<stem>_preview.png``, ``<stem>_areas.csv``) and, written
last, a record ``<stem>.samsar.json``: the model's sha256, the input's size, mtime and sha256, the
settings and the class counts. A scene whose record matches (same model, same input, same
settings) is skipped, so a rerun resumes; one mapped otherwise, or an output file without a
record, is replaced only with ``overwrite`` (else a one-line error naming the scene, before any
scene runs). Once every scene is done, ``mosaic.vrt`` (a GDAL VRT of all class maps) and
``areas.csv`` (per class: pixels, m2 and km2 per scene and in total) are written.

The Prefect flow ``samsar-map`` (``pipelines/batch.py``) runs the same steps with one task per scene.
"""

from __future__ import annotations

import csv
import hashlib
import json
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rasterio

from samsar.config import Params
from samsar.data.rasters import ignore_missing_georeference
from samsar.inference.boxes import GEOJSON_SUFFIXES
from samsar.inference.errors import PredictError
from samsar.inference.predict import output_paths, predict_scene, resolve_model
from samsar.inference.raster import SceneReader
from samsar.io import atomic_path, file_sha256, write_json
from samsar.progress import format_seconds

__all__ = [
    "BatchError", "BatchProgress", "BatchResult", "SceneOutcome", "adapter_sha256", "check_output_dir",
    "check_one_crs", "finish_batch", "is_batch_input", "list_scenes", "map_scene", "map_scenes",
    "plan_scene", "scene_settings",
]

SCENE_SUFFIXES = (".tif", ".tiff")
LIST_SUFFIX = ".txt"
RECORD_SUFFIX = ".samsar.json"
MOSAIC_NAME, AREAS_NAME = "mosaic.vrt", "areas.csv"
# predict_scene options that do not change what is written: not part of a scene's settings.
RUNTIME_OPTIONS = ("batch_size", "device")


class BatchError(PredictError):
    """The scenes, the output folder or a scene's earlier outputs do not allow the batch as asked."""


@dataclass(frozen=True)
class SceneOutcome:
    """One scene of a batch: ``status`` is ``mapped`` or ``skipped``; ``record`` is its ``.samsar.json``."""

    scene: Path
    status: str
    record: dict[str, Any]
    seconds: float


@dataclass(frozen=True)
class BatchResult:
    """What a batch mapped, skipped and wrote."""

    mapped: list[Path]
    skipped: list[Path]
    mosaic: Path
    areas: Path
    seconds: float


def is_batch_input(path: Path) -> bool:
    """Whether ``--input`` names many scenes: a folder, or a ``.txt`` list of paths."""
    return path.is_dir() or path.suffix.lower() == LIST_SUFFIX


def list_scenes(input_path: Path) -> list[Path]:
    """The scenes of a folder (its ``.tif``/``.tiff`` files, not recursive) or of a ``.txt`` list (one
    path a line; blank lines and ``#`` comments ignored; relative paths from the list's folder)."""
    input_path = Path(input_path)
    if input_path.is_dir():
        scenes = sorted(p.resolve() for p in input_path.iterdir()
                        if p.is_file() and p.suffix.lower() in SCENE_SUFFIXES and not p.name.startswith("."))
        if not scenes:
            raise BatchError(f"{input_path}: no GeoTIFF (.tif, .tiff) in this folder; pass a folder of scenes or a .txt list of paths")
    elif input_path.suffix.lower() == LIST_SUFFIX:
        if not input_path.is_file():
            raise BatchError(f"{input_path}: scene list not found; pass an existing .txt file with one scene path a line")
        scenes = []
        for number, line in enumerate(input_path.read_text().splitlines(), start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            path = Path(line).expanduser()
            path = (path if path.is_absolute() else input_path.parent / path).resolve()
            if not path.is_file():
                raise BatchError(f"{input_path}:{number}: {line} not found; fix the path (relative paths are read from the list's folder)")
            scenes.append(path)
        if not scenes:
            raise BatchError(f"{input_path}: lists no scene; write one scene path a line")
    else:
        raise BatchError(f"{input_path}: not a folder or a .txt list of scenes")
    by_stem: dict[str, Path] = {}
    for scene in scenes:
        other = by_stem.setdefault(scene.stem, scene)
        if other != scene:
            raise BatchError(f"{scene}: has the file name of {other}, so their outputs would collide; rename one or map them into separate folders")
        if scenes.count(scene) > 1:
            raise BatchError(f"{input_path}: lists {scene} more than once; keep one line per scene")
    return scenes


def check_output_dir(input_path: Path, output_dir: Path, scenes: Iterable[Path]) -> None:
    """Refuse an output folder that is a file, the input folder or inside it, or the folder of a listed scene."""
    out = Path(output_dir).resolve()
    if out.exists() and not out.is_dir():
        raise BatchError(f"{output_dir}: is a file; give --output a folder when --input is a folder or a list")
    if Path(input_path).is_dir():
        source = Path(input_path).resolve()
        if out == source or out.is_relative_to(source):
            raise BatchError(f"{output_dir}: is the input folder {source} or inside it; write the outputs outside it, "
                             f"e.g. {source.parent / (source.name + '_classes')}")
    for scene in scenes:
        if out == scene.parent:
            raise BatchError(f"{output_dir}: is the folder of input scene {scene}; write the outputs into another folder")


def check_one_crs(scenes: Iterable[Path]) -> None:
    """Every scene georeferenced, all in one CRS (the mosaic needs it); checked before anything runs."""
    first: tuple[Path, Any] | None = None
    for scene in scenes:
        with SceneReader(scene) as reader:
            if reader.crs is None:
                raise BatchError(f"{scene}: has no CRS; the mosaic needs georeferenced scenes: map it on its own "
                                 f"(--input {scene.name} --output <file>.tif)")
            crs = reader.crs
        if first is None:
            first = (scene, crs)
        elif crs != first[1]:
            raise BatchError(f"{scene}: CRS {crs.to_string()} differs from {first[1].to_string()} of {first[0].name}; "
                             f"a mosaic needs one CRS: map the scenes of each CRS into their own output folder (one list per CRS)")


def adapter_sha256(adapter_dir: Path) -> str:
    """sha256 over the adapter directory's files (relative names and contents): the model's identity."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(adapter_dir).rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(adapter_dir).as_posix()}\0{file_sha256(path)}\n".encode())
    return digest.hexdigest()


def scene_settings(options: dict[str, Any]) -> dict[str, Any]:
    """The predict options that change the outputs (all but batch size and device), JSON-ready.

    A ``boxes`` file must be GeoJSON (geographic boxes, so one file can prompt every scene; CSV pixel
    boxes belong to one scene: :class:`BatchError`); its sha256 is recorded as ``boxes_sha256``, so
    editing the file maps the scenes again rather than skipping them as done.
    """
    settings = {key: (str(value) if isinstance(value, Path) else value)
                for key, value in sorted(options.items()) if key not in RUNTIME_OPTIONS}
    boxes = options.get("boxes")
    if boxes is not None:
        boxes = Path(boxes)
        if boxes.suffix.lower() not in GEOJSON_SUFFIXES:
            raise BatchError(f"{boxes}: CSV boxes are pixels of one scene and cannot prompt every scene of a batch; "
                             f"pass a GeoJSON of boxes in the scenes' CRS, or predict each scene on its own with its CSV")
        if not boxes.is_file():
            raise BatchError(f"{boxes}: boxes file not found; pass a GeoJSON of boxes in the scenes' CRS")
        settings["boxes_sha256"] = file_sha256(boxes)
    return settings


def scene_files(scene: Path, output_dir: Path) -> tuple[Path, Path]:
    """``(class map, record)`` of ``scene`` in ``output_dir``."""
    return Path(output_dir) / f"{scene.stem}.tif", Path(output_dir) / f"{scene.stem}{RECORD_SUFFIX}"


def _read_record(path: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _same_input(record: dict[str, Any], scene: Path) -> bool:
    stat = scene.stat()
    if stat.st_size != record.get("input_size"):
        return False
    return stat.st_mtime_ns == record.get("input_mtime_ns") or file_sha256(scene) == record.get("input_sha256")


def plan_scene(scene: Path, output_dir: Path, model_sha: str, settings: dict[str, Any], overwrite: bool = False) -> tuple[str, bool]:
    """``(status, replace)``: ``("done", False)`` when the scene's record matches the model, input and
    settings and its outputs exist; else ``("todo", replace)``, ``replace`` allowing predict to
    replace existing outputs. Outputs of another model, input or settings, or without a record,
    raise :class:`BatchError` naming the scene unless ``overwrite``."""
    class_map, record_path = scene_files(scene, output_dir)
    outputs = [p for name, p in output_paths(class_map).items() if name != "confidence" or settings.get("confidence")]
    if record_path.exists():
        record = _read_record(record_path)
        if record is None:
            problem = f"its record {record_path} is unreadable"
        elif record.get("model_sha256") != model_sha:
            problem = f"{class_map} was mapped with another model ({record.get('model')}, sha256 {str(record.get('model_sha256'))[:12]})"
        elif not _same_input(record, scene):
            problem = f"the scene changed since {class_map} was mapped"
        elif record.get("settings") != settings:
            problem = f"{class_map} was mapped with other settings ({record.get('settings')})"
        elif all(p.exists() for p in outputs):
            return "done", False
        else:
            return "todo", True  # outputs of this very mapping went missing: write them again
    else:
        existing = [p for p in outputs if p.exists()]
        if not existing:
            return "todo", False
        problem = f"{existing[0]} exists but no {record_path.name} says which model wrote it"
    if overwrite:
        return "todo", True
    raise BatchError(f"{scene}: {problem}; pass --overwrite to map it again, or choose another --output")


def _pixel_area_m2(class_map: Path) -> float | None:
    with SceneReader(class_map) as reader:
        area = reader.pixel_area_km2()
    return None if area is None else area * 1e6


def map_scene(model: str | Path, scene: Path, output_dir: Path, *, model_sha: str | None = None,
              params: Params | None = None, overwrite: bool = False, **options: Any) -> SceneOutcome:
    """Map one scene unless it is done (see :func:`plan_scene`), then write its record.

    ``model`` is an adapter directory or a registry URI (downloaded here); ``model_sha``, when
    given, is the identity the batch was planned with: a model that differs (an alias moved) is
    refused. ``options`` go to :func:`~samsar.inference.predict.predict_scene`.
    """
    with tempfile.TemporaryDirectory(prefix="samsar-model-") as download_dir:
        adapter = resolve_model(model, params, Path(download_dir))
        sha = adapter_sha256(adapter)
        if model_sha is not None and sha != model_sha:
            raise BatchError(f"{model}: is not the model the batch was planned with (sha256 {sha[:12]}, planned {model_sha[:12]}); "
                             f"pass a fixed adapter directory or version (models:/NAME/VERSION) and rerun")
        return _map_resolved(str(model), adapter, sha, Path(scene), Path(output_dir), params, overwrite, options)


def _map_resolved(model: str, adapter: Path, model_sha: str, scene: Path, output_dir: Path, params: Params | None,
                  overwrite: bool, options: dict[str, Any]) -> SceneOutcome:
    started = time.perf_counter()
    settings = scene_settings(options)
    status, replace = plan_scene(scene, output_dir, model_sha, settings, overwrite)
    class_map, record_path = scene_files(scene, output_dir)
    if status == "done":
        return SceneOutcome(scene, "skipped", _read_record(record_path) or {}, time.perf_counter() - started)
    record_path.unlink(missing_ok=True)  # the outputs are replaced: the old record no longer describes them
    result = predict_scene(adapter, scene, class_map, params=params, overwrite=replace, **options)
    stat = scene.stat()
    record = {
        "scene": str(scene), "input_size": stat.st_size, "input_mtime_ns": stat.st_mtime_ns,
        "input_sha256": file_sha256(scene), "model": model, "model_sha256": model_sha, "settings": settings,
        "outputs": sorted(p.name for p in (result.class_map, result.preview, result.areas, result.confidence) if p is not None),
        # lists, not a dict: the JSON's keys are sorted, the classes must keep the model's order
        "class_names": list(result.counts), "counts": list(result.counts.values()),
        "pixel_area_m2": _pixel_area_m2(result.class_map),
    }
    write_json(record_path, record)
    return SceneOutcome(scene, "mapped", record, time.perf_counter() - started)


class BatchProgress:
    """One line per scene done or skipped: ``scene 2/5 mapped: b.tif in 41.0 s; 3 to go, ETA 2 min 03 s``.

    The ETA is the elapsed time per scene mapped so far (parallel workers included) times the scenes to go.
    """

    def __init__(self, total: int, to_map: int, report: Callable[[str], None]) -> None:
        self.total, self.to_map, self.report = total, to_map, report
        self.count = self.mapped = 0
        self.start = time.monotonic()

    def skipped(self, scene: Path) -> None:
        self.count += 1
        self.report(f"scene {self.count}/{self.total} skipped: {scene.name} (done with this model)")

    def done(self, scene: Path, status: str, seconds: float | None = None) -> None:
        self.count += 1
        self.mapped += 1
        left = self.to_map - self.mapped
        eta = (time.monotonic() - self.start) / self.mapped * left
        took = f" in {seconds:.1f} s" if seconds is not None else ""
        self.report(f"scene {self.count}/{self.total} {status}: {scene.name}{took}; {left} to go, ETA {format_seconds(eta)}")


def map_scenes(model: str | Path, input_path: Path, output_dir: Path, *, params: Params | None = None,
               overwrite: bool = False, report: Callable[[str], None] = print, **options: Any) -> BatchResult:
    """Map every scene of a folder or ``.txt`` list into ``output_dir``, one after the other, then write
    the mosaic and the area table (see module doc). Conflicts are reported before any scene runs."""
    started = time.perf_counter()
    input_path, output_dir = Path(input_path), Path(output_dir)
    scenes = list_scenes(input_path)
    check_output_dir(input_path, output_dir, scenes)
    check_one_crs(scenes)
    with tempfile.TemporaryDirectory(prefix="samsar-model-") as download_dir:
        adapter = resolve_model(model, params, Path(download_dir))  # a registry model is downloaded once
        model_sha = adapter_sha256(adapter)
        settings = scene_settings(options)
        plans = {scene: plan_scene(scene, output_dir, model_sha, settings, overwrite)[0] for scene in scenes}
        progress = BatchProgress(len(scenes), sum(status == "todo" for status in plans.values()), report)
        mapped, skipped = [], []
        for scene in scenes:
            if plans[scene] == "done":
                skipped.append(scene)
                progress.skipped(scene)
                continue
            outcome = _map_resolved(str(model), adapter, model_sha, scene, output_dir, params, overwrite, options)
            mapped.append(scene)
            progress.done(scene, outcome.status, outcome.seconds)
    mosaic, areas = finish_batch(output_dir, scenes)
    return BatchResult(mapped, skipped, mosaic, areas, time.perf_counter() - started)


def finish_batch(output_dir: Path, scenes: list[Path]) -> tuple[Path, Path]:
    """Write ``mosaic.vrt`` and ``areas.csv`` over the scenes' class maps and records; returns their paths."""
    output_dir = Path(output_dir)
    records = []
    for scene in scenes:
        class_map, record_path = scene_files(scene, output_dir)
        record = _read_record(record_path)
        if record is None or not class_map.is_file():
            raise BatchError(f"{scene}: not mapped yet ({record_path} or {class_map} missing); run the batch again to map it")
        records.append((class_map, record))
    mosaic, areas = output_dir / MOSAIC_NAME, output_dir / AREAS_NAME
    write_vrt([class_map for class_map, _ in records], mosaic)
    write_area_totals(records, areas)
    return mosaic, areas


def write_vrt(class_maps: list[Path], path: Path) -> None:
    """A GDAL VRT mosaic of single-band class maps in one CRS, in ``path``'s folder (sources relative to it).

    The grid has the finest pixel size of the inputs; where scenes overlap, the later one wins,
    except where it has no data.
    """
    infos = []
    for class_map in class_maps:
        with ignore_missing_georeference(), rasterio.open(class_map) as ds:
            t = ds.transform
            if t.b or t.d or t.e >= 0:
                raise BatchError(f"{class_map}: rotated or south-up grid; a VRT mosaic needs north-up scenes: reproject it first")
            infos.append(dict(path=class_map, crs=ds.crs, transform=t, width=ds.width, height=ds.height,
                              dtype=ds.dtypes[0], nodata=ds.nodata, colormap=ds.colormap(1) if ds.colorinterp[0].name == "palette" else None,
                              class_names=json.loads(ds.tags().get("CLASS_NAMES", "null"))))
    first = infos[0]
    for info in infos[1:]:
        if info["crs"] != first["crs"]:
            raise BatchError(f"{info['path']}: CRS differs from {first['path'].name}; map the scenes of each CRS into their own output folder")
    xres = min(info["transform"].a for info in infos)
    yres = min(-info["transform"].e for info in infos)
    left = min(info["transform"].c for info in infos)
    top = max(info["transform"].f for info in infos)
    right = max(info["transform"].c + info["width"] * info["transform"].a for info in infos)
    bottom = min(info["transform"].f + info["height"] * info["transform"].e for info in infos)
    width, height = round((right - left) / xres), round((top - bottom) / yres)

    root = ET.Element("VRTDataset", rasterXSize=str(width), rasterYSize=str(height))
    ET.SubElement(root, "SRS", dataAxisToSRSAxisMapping="1,2").text = first["crs"].to_wkt()
    ET.SubElement(root, "GeoTransform").text = ", ".join(repr(float(v)) for v in (left, xres, 0.0, top, 0.0, -yres))
    band = ET.SubElement(root, "VRTRasterBand", dataType=_GDAL_TYPES[first["dtype"]], band="1")
    ET.SubElement(band, "Description").text = "class"
    if first["nodata"] is not None:
        ET.SubElement(band, "NoDataValue").text = repr(float(first["nodata"]))
    if first["class_names"]:
        names = ET.SubElement(band, "CategoryNames")
        for name in first["class_names"]:
            ET.SubElement(names, "Category").text = name
    if first["colormap"]:
        ET.SubElement(band, "ColorInterp").text = "Palette"
        table = ET.SubElement(band, "ColorTable")
        for index in range(max(first["colormap"]) + 1):
            r, g, b, a = first["colormap"].get(index, (0, 0, 0, 0))
            ET.SubElement(table, "Entry", c1=str(r), c2=str(g), c3=str(b), c4=str(a))
    for info in infos:
        t = info["transform"]
        source = ET.SubElement(band, "ComplexSource")
        ET.SubElement(source, "SourceFilename", relativeToVRT="1").text = info["path"].name
        ET.SubElement(source, "SourceBand").text = "1"
        ET.SubElement(source, "SourceProperties", RasterXSize=str(info["width"]), RasterYSize=str(info["height"]),
                      DataType=_GDAL_TYPES[info["dtype"]], BlockXSize="256", BlockYSize="256")
        ET.SubElement(source, "SrcRect", xOff="0", yOff="0", xSize=str(info["width"]), ySize=str(info["height"]))
        ET.SubElement(source, "DstRect", xOff=_num((t.c - left) / xres), yOff=_num((top - t.f) / yres),
                      xSize=_num(info["width"] * t.a / xres), ySize=_num(info["height"] * -t.e / yres))
        if info["nodata"] is not None:
            ET.SubElement(source, "NODATA").text = repr(float(info["nodata"]))
    ET.indent(root)
    if any(info["path"].parent.resolve() != path.parent.resolve() for info in infos):
        raise ValueError("write_vrt: the class maps must be in the VRT's folder (sources are relative to it)")
    with atomic_path(path) as tmp:
        ET.ElementTree(root).write(tmp, encoding="unicode")


_GDAL_TYPES = {"uint8": "Byte", "uint16": "UInt16", "int16": "Int16", "uint32": "UInt32", "int32": "Int32",
               "float32": "Float32", "float64": "Float64"}


def _num(value: float) -> str:
    return str(round(value)) if abs(value - round(value)) < 1e-6 else repr(value)


def write_area_totals(records: list[tuple[Path, dict[str, Any]]], path: Path) -> None:
    """CSV ``scene, class_index, class, pixels, area_m2, area_km2``: per scene and class, then ``scene``
    = ``total`` (overlapping scenes count once each). Areas are empty when a scene has no projected CRS."""
    classes: list[str] = records[0][1]["class_names"]
    for class_map, record in records:
        if record["class_names"] != classes:
            raise BatchError(f"{class_map}: classes {record['class_names']} differ from {classes} of {records[0][0].name}; "
                             f"map all scenes with one model (--overwrite)")
    totals = {name: [0, 0.0] for name in classes}
    all_areas = True
    rows = []
    for class_map, record in records:
        area = record.get("pixel_area_m2")
        all_areas &= area is not None
        for index, name in enumerate(classes):
            pixels = int(record["counts"][index])
            totals[name][0] += pixels
            totals[name][1] += pixels * (area or 0.0)
            rows.append([class_map.stem, index, name, pixels, *_areas(pixels * area if area is not None else None)])
    for index, name in enumerate(classes):
        pixels, m2 = totals[name]
        rows.append(["total", index, name, pixels, *_areas(m2 if all_areas else None)])
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["scene", "class_index", "class", "pixels", "area_m2", "area_km2"])
        writer.writerows(rows)


def _areas(m2: float | None) -> list[str]:
    return ["", ""] if m2 is None else [f"{m2:.2f}", f"{m2 / 1e6:.6f}"]
