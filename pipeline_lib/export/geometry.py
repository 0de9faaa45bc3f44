"""Deployment geometry: the input sizes, thread counts and batch sizes an exported model is timed at.

    geometries({"imgsz": None, "threads": [1, "all"], "batch": [1]}, trained=128, extra_sizes=(640,), dynamic=32, threads=1)
    # [{"imgsz": 128, "threads": 1, "batch": 1}, {"imgsz": 128, "threads": 2, "batch": 1},
    #  {"imgsz": 640, "threads": 1, "batch": 1}, {"imgsz": 640, "threads": 2, "batch": 1}]
    geometry_label({"imgsz": 640, "threads": 1, "batch": 1})  # "640 px 1 thr b1"

Latency is a property of (model, input size, threads, batch, runtime, CPU): a 128-px model that
users run at 640 px spends its time in different places (per-operator overhead against
convolution arithmetic), so every latency record names its geometry. The first geometry is
always the reference one (the trained size, `export.threads`, batch 1): DESIGN's `latency_ms`.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:  # torch only for export's dynamic shapes: the report and the prune planner read the rest
    from ..inputs import Inputs

__all__ = ["GEOMETRY_KEYS", "resolve_threads", "deploy_sizes", "geometries", "geometry_label", "target_geometry", "LATENCY_HEAD",
           "SPEEDUP_HEAD", "geometry_columns", "deployment_head", "spatial_dims"]

GEOMETRY_KEYS = ("imgsz", "threads", "batch")


def resolve_threads(value: int | str) -> int:
    """A thread count of the config: an integer, or "all" (this machine's cores, recorded as the number)."""
    return os.cpu_count() or 1 if value == "all" else int(value)


def deploy_sizes(sizes: Sequence[int] | None, trained, extra_sizes: Sequence[int], dynamic: int) -> list:
    """The input sizes to time: `sizes` (None: the family's `extra_sizes`) after the trained size;
    only the trained size for a graph fixed at it (`dynamic` 0)."""
    if not dynamic:
        return [trained]
    return list(dict.fromkeys([trained, *(extra_sizes if sizes is None else sizes)]))


def geometries(deploy_cfg: dict, *, trained, extra_sizes: Sequence[int], dynamic: int, threads: int) -> list[dict]:
    """Every (imgsz, threads, batch) of `export.deploy`, the reference geometry (trained size,
    `threads`, batch 1) first."""
    reference = {"imgsz": trained, "threads": threads, "batch": 1}
    sizes = deploy_sizes(deploy_cfg["imgsz"], trained, extra_sizes, dynamic)
    counts = list(dict.fromkeys(resolve_threads(t) for t in deploy_cfg["threads"]))
    grid = [{"imgsz": s, "threads": t, "batch": b} for s in sizes for t in counts for b in deploy_cfg["batch"]]
    return [reference, *[g for g in grid if g != reference]]


def target_geometry(target: dict, deploy_imgsz: Sequence[int] | None, *, trained, extra_sizes: Sequence[int],
                    dynamic: int, threads: int) -> dict:
    """Where a timed prune target is measured: `target`'s imgsz (default: the largest deployment
    size, where a user deploying at 640 px wants the speed) and threads (default `threads`,
    export.threads), batch 1; the candidate timed as INT8 with `target.int8` (against the unpruned
    model's FP32 always: what a user starts from), else FP32."""
    sizes = deploy_sizes(deploy_imgsz, trained, extra_sizes, dynamic)
    largest = max(sizes, key=lambda s: s if isinstance(s, int) else s[0] * s[1])
    return {"imgsz": target.get("imgsz") or largest, "threads": resolve_threads(target.get("threads") or threads),
            "batch": 1, "precision": "int8" if target.get("int8") else "fp32"}


def geometry_label(geometry: dict) -> str:
    """How a column head names a geometry: "640 px 1 thr b1" (a non-square size as "384x128 px")."""
    size = geometry["imgsz"]
    size = f"{size[0]}x{size[1]}" if isinstance(size, (list, tuple)) else str(size)
    return f"{size} px {geometry['threads']} thr b{geometry['batch']}"


# summary.csv's and summary.md's column heads per geometry: "ORT ms 640 px 1 thr b1", "speedup 640 px 1 thr b1"
LATENCY_HEAD, SPEEDUP_HEAD = "ORT ms", "speedup"


def geometry_columns(records: list[dict]) -> dict[str, float]:
    """A metrics JSON's `latency` list as summary columns: {"ORT ms 640 px 1 thr b1": median, ...}."""
    return {f"{LATENCY_HEAD} {geometry_label(r)}": r["median"] for r in records}


def deployment_head(heads: Sequence[str]) -> str | None:
    """Of the per-geometry latency columns (`geometry_columns`), the deployment geometry's: the
    largest input size, at the fewest threads, batch 1 (None without such a column)."""
    def key(head: str) -> tuple:
        size, _, threads, _, batch = head.removeprefix(f"{LATENCY_HEAD} ").split(" ")
        height, _, width = size.partition("x")
        return int(height) * int(width or height), -int(threads)
    return max((h for h in heads if h.startswith(f"{LATENCY_HEAD} ") and h.endswith(" b1")), key=key, default=None)


def spatial_dims(example: Inputs, dynamic: int) -> tuple[dict, ...]:
    """torch.export's dynamic shapes for `example`: the batch of every input, and with `dynamic` > 0
    the height and width of the image (the first input) as multiples of `dynamic`."""
    import torch

    from ..inputs import as_tuple

    batch = torch.export.Dim("batch")
    shapes = [{0: batch} for _ in as_tuple(example)]
    if dynamic:
        shapes[0] |= {2: dynamic * torch.export.Dim("height_blocks", min=1, max=256),
                      3: dynamic * torch.export.Dim("width_blocks", min=1, max=256)}
    return tuple(shapes)
