"""Synthetic SAR land-cover scenes: a deterministic simulator standing in for labelled SAR data.

A scene is built in three steps:

1. **Layout** (land types): water, vegetation and urban zones are thresholded smooth random
   fields, so regions are large and irregular; open land is cut into rectangular parcels; thin
   roads cross the scene as connected curves; urban zones hold building blocks on a street grid.
2. **Backscatter** (mean sigma0 in dB): a per-type mean plus per-type texture (small- and
   large-scale correlated fields), parcel-to-parcel offsets on open land and, for buildings,
   double-bounce lines on the near-range side, bright point scatterers and radar shadow on the
   far-range side (the radar looks from the left).
3. **Speckle**: multiplicative Gamma noise with ``looks`` looks (``looks=1`` is single-look).

Single pixels overlap heavily between classes (as in real single-look SAR), while regions,
textures and shapes keep the classes recognisable with spatial context.

The ``target`` domain mimics FUSAR-Map 1.0 (building, vegetation, water, road, background); the
``source`` domain (:data:`SOURCE_CLASSES`) uses other land types and backscatter statistics and
stands in for the data a foundation model was pretrained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Sequence

import numpy as np
from scipy import ndimage

from samsar.config import SyntheticConfig
from samsar.data.errors import DataError

SOURCE_CLASSES: tuple[str, ...] = ("forest", "cropland", "lake", "urban", "highway", "bare_soil")


class LandType(IntEnum):
    """What the simulator draws; each domain names and colours these its own way."""

    OPEN = 0
    VEGETATION = 1
    WATER = 2
    ROAD = 3
    BUILDING = 4
    OPEN_ALT = 5  # second kind of open land (parcels); only the source domain tells it apart


@dataclass(frozen=True)
class Appearance:
    """Backscatter statistics of one land type, in dB."""

    mean_db: float
    fine_texture_db: float = 0.0  # std of a texture correlated over ~1.5 px
    coarse_texture_db: float = 0.0  # std of a texture correlated over ~scene/16
    parcel_db: float = 0.0  # std of the per-parcel mean offset (open land)


@dataclass(frozen=True)
class DomainProfile:
    """Class names, land-type shares and backscatter of one simulated domain."""

    class_names: dict[LandType, tuple[str, ...]]  # accepted class names per land type, first is canonical
    appearance: dict[LandType, Appearance]
    water_share: tuple[float, float]
    urban_share: tuple[float, float]
    vegetation_share: tuple[float, float]
    open_alt_share: float  # fraction of open-land parcels drawn as OPEN_ALT
    road_width: tuple[int, int]  # main roads, pixels (inclusive range)
    street_width: tuple[int, int]
    block_spacing: tuple[int, int]  # urban street grid period, pixels
    double_bounce_db: float
    scatterer_db: float
    scatterer_density: float
    shadow_db: float
    shadow_length: tuple[int, int]


TARGET_PROFILE = DomainProfile(
    class_names={
        LandType.BUILDING: ("building", "buildings", "urban", "built-up", "industry", "residence", "human built"),
        LandType.VEGETATION: ("vegetation", "woodland", "forest", "planting", "trees"),
        LandType.WATER: ("water", "sea", "lake", "river"),
        LandType.ROAD: ("road", "roads", "street", "highway"),
        LandType.OPEN: ("background", "other", "bare soil", "bare_soil", "open", "others"),
        LandType.OPEN_ALT: (),
    },
    appearance={
        LandType.OPEN: Appearance(-11.0, fine_texture_db=0.5, coarse_texture_db=1.0, parcel_db=2.0),
        LandType.VEGETATION: Appearance(-7.5, fine_texture_db=3.0, coarse_texture_db=1.0),
        LandType.WATER: Appearance(-17.0, fine_texture_db=0.3, coarse_texture_db=2.0),
        LandType.ROAD: Appearance(-15.0, fine_texture_db=1.0),
        LandType.BUILDING: Appearance(-6.0, fine_texture_db=2.5, coarse_texture_db=1.0),
        LandType.OPEN_ALT: Appearance(-11.0, fine_texture_db=0.5, coarse_texture_db=1.0, parcel_db=2.0),
    },
    water_share=(0.08, 0.22),
    urban_share=(0.10, 0.25),
    vegetation_share=(0.20, 0.35),
    open_alt_share=0.0,
    road_width=(2, 4),
    street_width=(2, 3),
    block_spacing=(14, 24),
    double_bounce_db=9.0,
    scatterer_db=10.0,
    scatterer_density=0.04,
    shadow_db=-20.0,
    shadow_length=(2, 4),
)

SOURCE_PROFILE = DomainProfile(
    class_names={
        LandType.VEGETATION: ("forest",),
        LandType.OPEN: ("cropland",),
        LandType.WATER: ("lake",),
        LandType.BUILDING: ("urban",),
        LandType.ROAD: ("highway",),
        LandType.OPEN_ALT: ("bare_soil",),
    },
    appearance={
        LandType.OPEN: Appearance(-9.0, fine_texture_db=1.0, coarse_texture_db=0.5, parcel_db=3.0),
        LandType.VEGETATION: Appearance(-5.0, fine_texture_db=2.0, coarse_texture_db=1.5),
        LandType.WATER: Appearance(-21.0, fine_texture_db=0.5, coarse_texture_db=1.0),
        LandType.ROAD: Appearance(-18.0, fine_texture_db=0.5),
        LandType.BUILDING: Appearance(-2.0, fine_texture_db=3.0, coarse_texture_db=1.0),
        LandType.OPEN_ALT: Appearance(-14.0, fine_texture_db=1.5, coarse_texture_db=1.0, parcel_db=1.0),
    },
    water_share=(0.05, 0.20),
    urban_share=(0.08, 0.20),
    vegetation_share=(0.20, 0.35),
    open_alt_share=0.4,
    road_width=(4, 7),
    street_width=(3, 4),
    block_spacing=(20, 32),
    double_bounce_db=6.0,
    scatterer_db=6.0,
    scatterer_density=0.02,
    shadow_db=-22.0,
    shadow_length=(3, 6),
)

PROFILES = {"target": TARGET_PROFILE, "source": SOURCE_PROFILE}


def class_lookup(profile: DomainProfile, class_names: Sequence[str]) -> np.ndarray:
    """Map every land type to an index into ``class_names``.

    Each class name must be one the domain knows; land types without a class of their own fall
    into the class of open land (the background class).
    """
    by_name = {name.lower(): land for land, names in profile.class_names.items() for name in names}
    lookup = np.full(len(LandType), -1, dtype=np.int64)
    for index, name in enumerate(class_names):
        land = by_name.get(name.lower())
        if land is None:
            known = sorted({names[0] for names in profile.class_names.values() if names})
            raise DataError(
                f"synthetic generator: class '{name}' is not a land type it can draw; "
                f"use names among {known} in data.classes or another data.source"
            )
        lookup[land] = index
    if lookup[LandType.OPEN] < 0:
        raise DataError(
            f"synthetic generator: data.classes {list(class_names)} has no open-land class "
            f"(e.g. '{profile.class_names[LandType.OPEN][0]}'); add one"
        )
    lookup[lookup < 0] = lookup[LandType.OPEN]
    return lookup


def generate_scene(cfg: SyntheticConfig, index: int, class_names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Simulate scene ``index``: ``(intensity float32 (S, S), label uint8 (S, S))``.

    Deterministic per ``(cfg.seed, index, cfg.domain)``; label values index ``class_names``.
    """
    profile = PROFILES[cfg.domain]
    lookup = class_lookup(profile, class_names)
    rng = np.random.default_rng([cfg.seed, index, 0 if cfg.domain == "target" else 1])
    size = cfg.scene_size
    land, parcels = _layout(rng, size, profile)
    sigma0_db = _backscatter(rng, land, parcels, profile)
    speckle = rng.gamma(cfg.looks, 1.0 / cfg.looks, size=(size, size)).astype(np.float32)
    intensity = np.power(np.float32(10.0), sigma0_db / np.float32(10.0)) * speckle
    return intensity.astype(np.float32), lookup[land].astype(np.uint8)


def _smooth_field(rng: np.random.Generator, size: int, correlation: float) -> np.ndarray:
    """Zero-mean, unit-std random field correlated over about ``correlation`` pixels."""
    if correlation <= 3:
        field = ndimage.gaussian_filter(rng.standard_normal((size, size), dtype=np.float32), correlation)
    else:
        # Filter coarse noise and interpolate up: the same look at a fraction of the cost.
        factor = correlation / 3.0
        coarse = max(4, int(np.ceil(size / factor)) + 2)
        noise = ndimage.gaussian_filter(rng.standard_normal((coarse, coarse), dtype=np.float32), 1.5, mode="wrap")
        field = ndimage.zoom(noise, size / (coarse - 2), order=1)[:size, :size]
    field -= field.mean()
    return field / max(float(field.std()), 1e-6)


def _top_fraction(field: np.ndarray, share: float, allowed: np.ndarray) -> np.ndarray:
    """Mask of the ``share`` of all pixels where ``field`` is highest, within ``allowed``."""
    values = field[allowed]
    if values.size == 0 or share <= 0:
        return np.zeros_like(allowed)
    quantile = max(0.0, 1.0 - share * field.size / values.size)
    return allowed & (field > np.quantile(values, quantile))


def _layout(rng: np.random.Generator, size: int, p: DomainProfile) -> tuple[np.ndarray, np.ndarray]:
    """Land-type map (uint8 LandType) and open-land parcel ids of one scene."""
    land = np.full((size, size), LandType.OPEN, dtype=np.uint8)
    everywhere = np.ones((size, size), dtype=bool)
    water = _top_fraction(_smooth_field(rng, size, size / 5), rng.uniform(*p.water_share), everywhere)
    land[water] = LandType.WATER
    urban = _top_fraction(_smooth_field(rng, size, size / 6), rng.uniform(*p.urban_share), ~water)
    vegetation = _top_fraction(_smooth_field(rng, size, size / 8), rng.uniform(*p.vegetation_share), ~water & ~urban)
    land[vegetation] = LandType.VEGETATION

    parcels = _parcels(rng, size)
    if p.open_alt_share > 0:
        alt = rng.random(parcels.max() + 1) < p.open_alt_share
        land[(land == LandType.OPEN) & alt[parcels]] = LandType.OPEN_ALT

    _draw_urban(rng, land, urban, p)
    roads = _road_network(rng, size, p.road_width)
    land[roads & ~water] = LandType.ROAD
    return land, parcels


def _parcels(rng: np.random.Generator, size: int) -> np.ndarray:
    """Rectangular field parcels: an irregular grid of cells, ids ``0..n-1``."""

    def cuts() -> np.ndarray:
        edges = np.cumsum(rng.integers(size // 14, size // 5, size=size))
        return np.searchsorted(edges[edges < size], np.arange(size), side="right")

    rows, cols = cuts(), cuts()
    return rows[:, None] * (cols.max() + 1) + cols[None, :]


def _draw_urban(rng: np.random.Generator, land: np.ndarray, urban: np.ndarray, p: DomainProfile) -> None:
    """Building blocks separated by a street grid inside the urban zone (streets are roads)."""
    size = land.shape[0]
    spacing = int(rng.integers(p.block_spacing[0], p.block_spacing[1] + 1))
    width = int(rng.integers(p.street_width[0], p.street_width[1] + 1))
    offset_r, offset_c = rng.integers(0, spacing, size=2)
    r = (np.arange(size) + offset_r) % spacing < width
    c = (np.arange(size) + offset_c) % spacing < width
    street = r[:, None] | c[None, :]
    block_id = ((np.arange(size) + offset_r) // spacing)[:, None] * size + ((np.arange(size) + offset_c) // spacing)[
        None, :
    ]
    _, block_index = np.unique(block_id, return_inverse=True)
    park = (rng.random(block_index.max() + 1) < 0.12)[block_index.reshape(size, size)]
    land[urban & street] = LandType.ROAD
    land[urban & ~street & park] = LandType.VEGETATION
    land[urban & ~street & ~park] = LandType.BUILDING


def _road_network(rng: np.random.Generator, size: int, width_range: tuple[int, int]) -> np.ndarray:
    """Thin connected roads: gently curving lines that cross the whole scene both ways."""
    mask = np.zeros((size, size), dtype=bool)
    t = np.arange(0, size, 0.5)
    for transpose in (False, True):
        for _ in range(int(rng.integers(1, 3 + size // 512))):
            knots = rng.normal(0, size / 12, size=6)
            wiggle = np.interp(t, np.linspace(0, size, knots.size), knots)
            start, slope = rng.uniform(0.1, 0.9) * size, rng.uniform(-0.3, 0.3)
            across = np.clip(np.round(start + slope * (t - size / 2) + wiggle), 0, size - 1).astype(np.int64)
            along = t.astype(np.int64)
            line = np.zeros((size, size), dtype=bool)
            if transpose:
                line[along, across] = True
            else:
                line[across, along] = True
            half = int(rng.integers(width_range[0], width_range[1] + 1)) // 2
            mask |= ndimage.binary_dilation(line, iterations=half) if half else line
    return mask


def _backscatter(rng: np.random.Generator, land: np.ndarray, parcels: np.ndarray, p: DomainProfile) -> np.ndarray:
    """Mean sigma0 in dB (float32) for a land-type map."""
    size = land.shape[0]
    fine = _smooth_field(rng, size, 1.5)
    coarse = _smooth_field(rng, size, size / 16)
    parcel_offset = rng.standard_normal(parcels.max() + 1).astype(np.float32)[parcels]
    table = [p.appearance[LandType(i)] for i in range(len(LandType))]
    mean = np.array([a.mean_db for a in table], dtype=np.float32)[land]
    fine_std = np.array([a.fine_texture_db for a in table], dtype=np.float32)[land]
    coarse_std = np.array([a.coarse_texture_db for a in table], dtype=np.float32)[land]
    parcel_std = np.array([a.parcel_db for a in table], dtype=np.float32)[land]
    db = mean + fine_std * fine + coarse_std * coarse + parcel_std * parcel_offset
    db += np.float32(rng.normal(0.0, 0.5))  # scene-level calibration / incidence offset

    building = land == LandType.BUILDING
    left_of = np.zeros_like(building)
    left_of[:, 1:] = building[:, :-1]
    db[building & ~left_of] += p.double_bounce_db  # near-range wall: double bounce
    scatterers = building & (rng.random(building.shape) < p.scatterer_density)
    db[scatterers] += p.scatterer_db
    shadow = np.zeros_like(building)
    for k in range(1, int(rng.integers(p.shadow_length[0], p.shadow_length[1] + 1)) + 1):
        shadow[:, k:] |= building[:, :-k]
    db[shadow & ~building] = p.shadow_db
    return db.astype(np.float32)
