"""What ONNX Runtime actually runs: the kernels left after graph optimization, and time per op type.

    kernel_counts("results/export/pruned_finetuned.int8.onnx")
    # {"QLinearConv": 60, "QLinearMul": 69, "QLinearSigmoid": 60, "DequantizeLinear": 7, ...}
    op_profile("results/export/pruned_finetuned.int8.onnx", torch.rand(1, 3, 128, 128), threads=1, runs=100)
    # {"model_run_us": 760.0, "ops": {"QLinearConv": {"us": 310.2, "nodes": 60}, ...}}

A QDQ model only pays off when ORT fuses each DequantizeLinear -> op -> QuantizeLinear group
into an integer kernel (QLinearConv, QLinearMul, ...); a float op left between Q/DQ pairs costs
two extra conversions. These two views show which case a model is in.
"""
from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from pathlib import Path

import onnx
import torch

from ..inputs import ort_feed
from .runtime import make_session

__all__ = ["kernel_counts", "op_profile"]


def kernel_counts(path: str | os.PathLike, threads: int = 1) -> dict[str, int]:
    """Node count per op type of the graph ORT executes (after ORT_ENABLE_ALL optimizations), most first."""
    with tempfile.TemporaryDirectory() as tmp:
        optimized = Path(tmp) / "optimized.onnx"
        make_session(path, threads, optimized_path=optimized)
        graph = onnx.load(str(optimized)).graph
    return dict(Counter(node.op_type for node in graph.node).most_common())


def op_profile(path: str | os.PathLike, example: torch.Tensor, *, threads: int = 1, runs: int = 100) -> dict:
    """Mean microseconds per run for each op type, from ORT's own profiler (kernel time only).

    Profiling adds a little time per node, so use it to see where the time goes, and
    `latency.ort_latency` for the latency itself.
    """
    with tempfile.TemporaryDirectory() as tmp:
        session = make_session(path, threads, profile_prefix=str(Path(tmp) / "ort"))
        feed = ort_feed(session, example)
        for _ in range(runs):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    us, nodes, model_run = Counter(), Counter(), 0.0
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            us[event["args"]["op_name"]] += event["dur"]
            nodes[event["args"]["op_name"]] += 1
        elif event.get("cat") == "Session" and event["name"] == "model_run":
            model_run += event["dur"]
    ops = {op: {"us": round(t / runs, 1), "nodes": nodes[op] // runs} for op, t in us.most_common()}
    return {"model_run_us": round(model_run / runs, 1), "kernel_us": round(sum(us.values()) / runs, 1), "ops": ops}
