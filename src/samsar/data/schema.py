"""pandera schema of ``manifest.parquet`` (one row per tile)."""

from __future__ import annotations

import pandera.pandas as pa

from samsar.data.splits import SPLITS


def manifest_schema(class_names: list[str], tile_size: int) -> pa.DataFrameSchema:
    """Schema for a manifest of ``tile_size`` tiles over ``class_names``; validate with ``lazy=True``."""
    count = pa.Column(int, pa.Check.ge(0))
    columns = {
        "tile_id": pa.Column(str, unique=True),
        "split": pa.Column(str, pa.Check.isin(SPLITS)),
        "image_path": pa.Column(str, pa.Check.str_matches(r"^images/.+\.npy$")),
        "label_path": pa.Column(str, pa.Check.str_matches(r"^labels/.+\.png$")),
        "source_file": pa.Column(str),
        "row_off": pa.Column(int, pa.Check.ge(0)),
        "col_off": pa.Column(int, pa.Check.ge(0)),
        "height": pa.Column(int, pa.Check.in_range(1, tile_size)),
        "width": pa.Column(int, pa.Check.in_range(1, tile_size)),
        **{f"count_{name}": count for name in class_names},
        "count_ignore": count,
        "mean": pa.Column(float, pa.Check.in_range(0.0, 1.0)),
        "std": pa.Column(float, pa.Check.in_range(0.0, 1.0)),
        "sha256": pa.Column(str, pa.Check.str_matches(r"^[0-9a-f]{64}$")),
    }
    count_columns = [f"count_{name}" for name in [*class_names, "ignore"]]
    return pa.DataFrameSchema(
        columns,
        checks=[
            pa.Check(
                lambda df: df[count_columns].sum(axis=1) == tile_size * tile_size,
                name="pixel_counts_sum_to_tile_area",
                error=f"count_* columns must add up to {tile_size}x{tile_size} pixels",
            )
        ],
        strict=True,
        ordered=True,
    )
