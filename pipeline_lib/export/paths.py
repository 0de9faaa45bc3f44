"""File names of the export rules (workflow/rules/export.smk), kept here so the rule file holds rules only.

    onnx_metrics({"int8": True})
    # ["results/metrics/baseline.onnx_fp32.json", "results/metrics/onnx_fp32.json", "results/metrics/onnx_int8.json"]
    onnx_inputs("baseline.", "fp32")   # {"onnx": "results/export/baseline.onnx", "report": "results/export/baseline.json"}

ONNX metrics are `results/metrics/{prefix}onnx_{precision}.json`: an empty prefix is the deployed
model (issue 7's `onnx_fp32.json` / `onnx_int8.json`), `<stage>.` any other stage.
"""
from __future__ import annotations

import re
from typing import Iterable

__all__ = ["DEPLOYED", "prefix_pattern", "onnx_metrics", "torch_latencies", "onnx_inputs"]

DEPLOYED = "pruned_finetuned"


def prefix_pattern(stages: Iterable[str]) -> str:
    """Wildcard constraint for {prefix}: '<stage>.' for every stage but the deployed one, or empty."""
    return "(" + "".join(f"{re.escape(s)}\\.|" for s in stages if s != DEPLOYED) + ")"


def onnx_metrics(export_cfg: dict) -> list[str]:
    """ONNX Runtime metrics the report shows: baseline and deployed FP32, then deployed INT8."""
    return (["results/metrics/baseline.onnx_fp32.json", "results/metrics/onnx_fp32.json"]
            + (["results/metrics/onnx_int8.json"] if export_cfg["int8"] else []))


def torch_latencies() -> list[str]:
    """PyTorch eager latency of the baseline and the deployed checkpoint, for reference."""
    return ["results/latency/baseline.torch.json", f"results/latency/{DEPLOYED}.torch.json"]


def onnx_inputs(prefix: str, precision: str) -> dict[str, str]:
    """The exported model and its report that results/metrics/{prefix}onnx_{precision}.json evaluates."""
    stem = f"results/export/{prefix.rstrip('.') or DEPLOYED}" + (".int8" if precision == "int8" else "")
    return {"onnx": f"{stem}.onnx", "report": f"{stem}.json"}
