"""PyTorch's own latency of a checkpoint, the reference for the ONNX Runtime numbers.

    torch_latency_stage(checkpoint="results/baseline.pt", export_cfg=..., out_json="results/latency/baseline.torch.json")

Apart from `steps.export` so that its job loads neither ONNX nor ONNX Runtime.
"""
from __future__ import annotations

import logging
import os

import torch

from ..export.latency import torch_latency
from ..io import write_json
from ..tasks import Task, load_model

__all__ = ["random_input", "torch_latency_stage"]

log = logging.getLogger("slimflow")


def random_input(task: Task, imgsz, batch: int, seed: int):
    """The family's example input, drawn from a generator seeded with `seed`."""
    return task.example_input(imgsz, batch, generator=torch.Generator().manual_seed(seed))


def torch_latency_stage(*, checkpoint: str | os.PathLike, export_cfg: dict, out_json: str | os.PathLike,
                        seed: int = 0) -> dict:
    """PyTorch eager CPU latency of a checkpoint at batch 1 (the reference for the ONNX Runtime numbers)."""
    loaded = load_model(checkpoint)
    latency = torch_latency(loaded.model, random_input(loaded.task, loaded.imgsz, 1, seed), threads=export_cfg["threads"],
                            runs=export_cfg["latency_runs"], warmup=export_cfg["latency_warmup"])
    result = {"stage": loaded.ckpt["meta"].get("stage"), "checkpoint": str(checkpoint), "format": "torch",
              "runtime": f"torch {torch.__version__} eager CPU", "imgsz": loaded.imgsz, "latency_ms": latency}
    write_json(out_json, result)
    log.info("%s: PyTorch eager latency %s", checkpoint, latency)
    return result
