"""Diffusion's check before any job runs (the preflight; docs/FAMILIES.md): imports no torch."""
from __future__ import annotations

from pathlib import Path

from .idx import FILES, NAMES, check_split

__all__ = ["check_dataset"]


def check_dataset(dataset_cfg: dict) -> list[Path]:
    """The user folder's headers, file sizes and labels, before any job runs; the paths read ([] when embedded)."""
    if dataset_cfg.get("path") is None:
        return []
    root = Path(dataset_cfg["path"])
    read = [root]  # a file added or renamed changes the folder's mtime
    for split in FILES:
        images_path, labels_path, _ = check_split(root, split, len(NAMES))
        read += [images_path, labels_path]
    return read
