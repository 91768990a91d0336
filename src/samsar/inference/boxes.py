"""Box prompts for prediction with the box_prompt head, read from a file (``samsar predict --boxes``).

Two formats:

- **GeoJSON** (``.geojson`` / ``.json``): a FeatureCollection, a Feature or a bare geometry; each
  geometry's bounds (polygons, points, lines) become one box. Coordinates are in the scene's CRS
  unless the file names another in a ``crs`` member (``{"type": "name", "properties": {"name":
  "EPSG:4326"}}``), which is then transformed with ``rasterio.warp.transform_geom``. For a scene
  without georeference the coordinates are pixel columns and rows.
- **CSV** (any other suffix): pixel boxes of the scene with a header naming ``x0,y0,x1,y1``
  (columns, rows; the corner pixels are included), other columns ignored.

Boxes are returned as ``float32 (N, 4)`` scene pixel coordinates ``x0, y0, x1, y1``;
:func:`window_boxes` cuts them to one prediction window.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from affine import Affine

from samsar.inference.errors import PredictError

BOX_COLUMNS = ("x0", "y0", "x1", "y1")
GEOJSON_SUFFIXES = (".geojson", ".json")


def read_boxes(path: Path | str, height: int, width: int, crs=None, transform: Affine | None = None) -> np.ndarray:
    """Boxes of ``path`` (GeoJSON or CSV) in pixels of a ``height x width`` scene with ``crs`` and
    ``transform`` (None: no georeference); boxes wholly outside the scene are dropped, the others
    clipped to it. :class:`PredictError` naming the file for anything unreadable."""
    path = Path(path)
    if not path.is_file():
        raise PredictError(f"{path}: boxes file not found; pass a GeoJSON or a CSV with columns x0,y0,x1,y1")
    if path.suffix.lower() in GEOJSON_SUFFIXES:
        boxes = _geojson_boxes(path, crs, transform)
    else:
        boxes = _csv_boxes(path)
    return clip_boxes(boxes, height, width)


def clip_boxes(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """Boxes that overlap the ``height x width`` image, clipped to it."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    inside = (boxes[:, 2] >= 0) & (boxes[:, 3] >= 0) & (boxes[:, 0] <= width - 1) & (boxes[:, 1] <= height - 1)
    clipped = np.clip(boxes[inside], 0, [width - 1, height - 1, width - 1, height - 1])
    return clipped.astype(np.float32)


def window_boxes(boxes: np.ndarray, row0: int, col0: int, size: int) -> torch.Tensor:
    """The boxes that intersect the ``size x size`` window at ``(row0, col0)``, clipped to it and
    in window pixel coordinates: ``float32 (n, 4)``, ``n`` may be 0."""
    shifted = np.asarray(boxes, dtype=np.float32).reshape(-1, 4) - np.array([col0, row0, col0, row0], dtype=np.float32)
    return torch.from_numpy(clip_boxes(shifted, size, size))


def _csv_boxes(path: Path) -> np.ndarray:
    try:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            header = [name.strip() for name in reader.fieldnames or []]
            missing = [c for c in BOX_COLUMNS if c not in header]
            if missing:
                raise PredictError(f"{path}: CSV header {header} lacks {missing}; the first line must name x0,y0,x1,y1 "
                                   f"(pixel columns and rows of the scene)")
            rows = [{k.strip(): v for k, v in row.items() if k is not None} for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise PredictError(f"{path}: cannot be read as a CSV of boxes ({exc}); write x0,y0,x1,y1 with a header") from exc
    boxes = []
    for line, row in enumerate(rows, start=2):
        try:
            box = [float(row[c]) for c in BOX_COLUMNS]
        except (TypeError, ValueError):
            raise PredictError(f"{path}: line {line}: x0,y0,x1,y1 must be numbers, got "
                               f"{[row.get(c) for c in BOX_COLUMNS]}") from None
        if not all(math.isfinite(v) for v in box) or box[2] < box[0] or box[3] < box[1]:
            raise PredictError(f"{path}: line {line}: box {box} is not finite with x0 <= x1 and y0 <= y1; fix the row")
        boxes.append(box)
    return np.array(boxes, dtype=np.float64).reshape(-1, 4)


def _geojson_boxes(path: Path, scene_crs, transform: Affine | None) -> np.ndarray:
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise PredictError(f"{path}: not valid GeoJSON ({exc}); pass a FeatureCollection of box polygons or points") from exc
    geometries = list(_geometries(doc, path))
    file_crs = _file_crs(doc, path)
    if file_crs is not None:
        if scene_crs is None:
            raise PredictError(f"{path}: coordinates are in {file_crs} but the scene has no CRS; "
                               f"give the boxes in pixels (CSV x0,y0,x1,y1) or without a crs member")
        if file_crs != scene_crs:
            from rasterio.warp import transform_geom

            try:
                geometries = [transform_geom(file_crs, scene_crs, g) for g in geometries]
            except Exception as exc:  # rasterio/GDAL raise several types for one failed transform
                raise PredictError(f"{path}: cannot transform from {file_crs} to the scene's {scene_crs} ({exc}); "
                                   f"give the boxes in the scene's CRS") from exc
    inverse = ~(transform or Affine.identity())
    boxes = []
    for geometry in geometries:
        xs, ys = zip(*_points(geometry.get("coordinates"), path))
        corners = [inverse @ (x, y) for x in (min(xs), max(xs)) for y in (min(ys), max(ys))]
        cols, rows = [c for c, _ in corners], [r for _, r in corners]
        col0, row0 = math.floor(min(cols)), math.floor(min(rows))
        # Continuous bounds -> the pixels they touch (a point inside pixel 10 gives 10..10).
        boxes.append([col0, row0, max(col0, math.ceil(max(cols)) - 1), max(row0, math.ceil(max(rows)) - 1)])
    return np.array(boxes, dtype=np.float64).reshape(-1, 4)


def _geometries(doc, path: Path) -> Iterator[dict]:
    kind = doc.get("type") if isinstance(doc, dict) else None
    if kind == "FeatureCollection":
        for feature in doc.get("features") or []:
            yield from _geometries(feature, path)
    elif kind == "Feature":
        if doc.get("geometry") is not None:
            yield from _geometries(doc["geometry"], path)
    elif kind == "GeometryCollection":
        for geometry in doc.get("geometries") or []:
            yield from _geometries(geometry, path)
    elif kind in ("Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon"):
        yield doc
    else:
        raise PredictError(f"{path}: unexpected GeoJSON object of type {kind!r}; pass a FeatureCollection of polygons or points")


def _points(coordinates, path: Path) -> Iterator[tuple[float, float]]:
    if isinstance(coordinates, (list, tuple)) and coordinates and all(isinstance(v, (int, float)) for v in coordinates):
        if len(coordinates) < 2:
            raise PredictError(f"{path}: a GeoJSON position needs x and y, got {coordinates}")
        yield float(coordinates[0]), float(coordinates[1])
    elif isinstance(coordinates, (list, tuple)) and coordinates:
        for part in coordinates:
            yield from _points(part, path)
    else:
        raise PredictError(f"{path}: a geometry has no coordinates ({coordinates!r}); remove it or give its shape")


def _file_crs(doc, path: Path):
    """The CRS a GeoJSON names in its (pre-RFC 7946) ``crs`` member, or None."""
    member = doc.get("crs") if isinstance(doc, dict) else None
    if member is None:
        return None
    from rasterio.crs import CRS
    from rasterio.errors import CRSError

    name = (member.get("properties") or {}).get("name") if isinstance(member, dict) else None
    try:
        return CRS.from_user_input(name)
    except (CRSError, TypeError, ValueError) as exc:
        raise PredictError(f"{path}: unreadable crs member {member!r} ({exc}); use {{\"type\": \"name\", "
                           f"\"properties\": {{\"name\": \"EPSG:32633\"}}}} or leave it out (scene CRS)") from exc
