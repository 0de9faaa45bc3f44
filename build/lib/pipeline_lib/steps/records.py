"""What the steps share: the metrics record every evaluation writes, and the class-name check.

    record = metrics_record(stage="pruned", task=task, checkpoint="results/pruned.pt", metrics={...}, ...)
"""
from __future__ import annotations

import os

from ..errors import UserError

__all__ = ["NO_MANIFEST", "check_names", "metrics_record"]

NO_MANIFEST = "run prepare-dataset first (snakemake does it; by hand: python -m pipeline_lib prepare-dataset)"


def _preview(names: list) -> str:
    return str(names if len(names) <= 4 else [*names[:3], "..."])


def check_names(checkpoint: str | os.PathLike, ckpt: dict, manifest_path: str | os.PathLike, manifest: dict,
                 remedy: str) -> None:
    """A checkpoint meets a dataset with its own label set only (one UserError line otherwise)."""
    names = ckpt["meta"].get("names")
    if names is not None and names != manifest["names"]:
        raise UserError(f"{checkpoint}: trained for {len(names)} classes {_preview(names)}, but {manifest_path} has "
                        f"{len(manifest['names'])} {_preview(manifest['names'])}; {remedy}")




def metrics_record(*, stage: str, task, path: str | os.PathLike, metrics: dict, params: int, flops: int, imgsz,
                   manifest_path: str | os.PathLike, network_calls: int, **extra) -> dict:
    """results/metrics/*.json, for a checkpoint in PyTorch and an exported model in ONNX Runtime alike:
    {"stage", "task", "checkpoint", "metrics", "fitness", "params", "flops", "file_bytes", "imgsz",
    "data", "network_calls"} and the `extra` keys of its kind (format, latency_ms, training, ...)."""
    return {"stage": stage, "task": task.family, "checkpoint": str(path), "metrics": metrics,
            "fitness": task.fitness(metrics), "params": params, "flops": flops, "file_bytes": os.path.getsize(path),
            "imgsz": imgsz, "data": str(manifest_path), "network_calls": network_calls, **extra}
