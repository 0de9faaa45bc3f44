"""Detection's checks before any job runs (config validation and the preflight; docs/FAMILIES.md):
they import no torch, so a mistake is reported in a second and a valid run starts sooner."""
from __future__ import annotations

from pathlib import Path

from ...errors import ConfigError
from .yolo_format import check_yolo_dataset

__all__ = ["check_config", "check_dataset"]


def check_config(config: dict) -> None:
    """Anchor rows: three levels (strides 8, 16, 32) of w, h pairs, the same count in each."""
    anchors = config["model"]["anchors"]
    if isinstance(anchors, list):
        for i, row in enumerate(anchors):
            if len(row) % 2:
                raise ConfigError(("model", "anchors", i), f"{len(row)} numbers: a row holds w, h pairs (an even count)")
            if len(row) != len(anchors[0]):
                raise ConfigError(("model", "anchors", i), f"{len(row) // 2} anchors, but row 0 has "
                                  f"{len(anchors[0]) // 2}: every level needs the same number")


def check_dataset(dataset_cfg: dict) -> list[Path]:
    return [] if dataset_cfg["path"] is None else check_yolo_dataset(dataset_cfg["path"])
