"""ReID's check before any job runs (the preflight; docs/FAMILIES.md): imports no torch."""
from __future__ import annotations

from pathlib import Path

from .market import SPLIT_DIRS, index_market

__all__ = ["check_dataset"]


def check_dataset(dataset_cfg: dict) -> list[Path]:
    root = dataset_cfg["path"]
    if root is None:
        return []
    index = index_market(root, verify_images=False)  # names, layout, query/gallery overlap
    images = [Path(item["image"]) for items in index["splits"].values() for item in items]
    # renames change folder mtimes; the images' headers are the preflight's (preflight.check_image)
    return [Path(root), *(Path(root) / folder for folder in SPLIT_DIRS.values()), *images]
