"""``data/raw/index.json``: the list of raw image/label files that preprocessing reads.

``prepare`` writes it for every source. External files are listed by absolute path with their
sha256; generated files (synthetic scenes, labels reprojected onto their image grid) are listed
relative to the raw folder.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from samsar.data.errors import DataError
from samsar.data.labels import Encoding

INDEX_NAME = "index.json"


@dataclass(frozen=True)
class RawItem:
    """One image/label pair as checked by ``prepare``."""

    id: str
    image: Path
    label: Path
    image_sha256: str
    label_sha256: str
    height: int
    width: int
    channels: int
    dtype: str
    class_counts: dict[str, int]  # per class name, plus "ignore" (which includes labels under image nodata)
    split: str | None = None  # fixed by the source (FUSAR-Map test set), else None
    bands: tuple[int, ...] | None = None  # 0-based indices of the data.bands in this file; None: every band
    nodata_pixels: int = 0  # image pixels that are nodata (file nodata/mask, data.nodata)
    label_source: str | None = None  # the original label when ``label`` is its reprojection onto the image grid


@dataclass(frozen=True)
class RawIndex:
    """Everything preprocessing needs to know about the raw data."""

    source: str
    layout: str  # "files" or "scene"
    encoding: Encoding
    items: list[RawItem] = field(default_factory=list)

    def save(self, folder: Path) -> dict:
        """The JSON document for ``folder/index.json``; paths inside ``folder`` are stored relative."""

        def rel(p: Path) -> str:
            return str(p.relative_to(folder)) if p.is_relative_to(folder) else str(p.resolve())

        items = [{**asdict(item), "image": rel(item.image), "label": rel(item.label)} for item in self.items]
        return {"source": self.source, "layout": self.layout, "encoding": self.encoding, "items": items}

    @classmethod
    def load(cls, raw_dir: Path) -> "RawIndex":
        """Read ``raw_dir/index.json``; relative paths resolve against ``raw_dir``."""
        path = raw_dir / INDEX_NAME
        if not path.is_file():
            raise DataError(f"{path}: raw index not found; run `samsar prepare` first")
        try:
            doc = json.loads(path.read_text())
            items = [
                RawItem(**{
                    **item, "image": raw_dir / item["image"], "label": raw_dir / item["label"],
                    "bands": None if item.get("bands") is None else tuple(item["bands"]),
                })
                for item in doc["items"]
            ]
            return cls(doc["source"], doc["layout"], doc["encoding"], items)
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{path}: malformed raw index ({exc}); run `samsar prepare` again") from exc

