"""The chain's first step: the dataset, generated or indexed, and its manifest.

    prepare_dataset(dataset_cfg=cfg["dataset"], family="detection", seed=0, manifest_path="results/data/dataset.json")

Apart from `steps.chain` so that its job imports only the family, not the pruning, export and
training code the other steps need.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from ..io import write_json
from ..tasks import get_task

__all__ = ["prepare_dataset"]

log = logging.getLogger("slimflow")


def prepare_dataset(*, dataset_cfg: dict, family: str, seed: int, manifest_path: str | os.PathLike,
                    fingerprint: str | None = None) -> dict:
    """Generate (embedded default) or index a real dataset, validate it once, write the manifest
    (with `fingerprint`, the pre-run check's content fingerprint of the dataset it was made from)."""
    manifest_path = Path(manifest_path)
    manifest = {**get_task(family).prepare_dataset(dataset_cfg, manifest_path.parent, seed), "fingerprint": fingerprint}
    write_json(manifest_path, manifest)
    log.info("dataset: %s; names: %s", manifest["counts"], manifest["names"])
    return manifest
