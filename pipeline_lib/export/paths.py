"""What the export rules (workflow/rules/export.smk) read, kept here so the rule file holds rules only:
file names, and the `export` keys each rule depends on.

    rule_settings(config["export"], "quantize_int8")  # {"calibration_images": 100, "int8_silu": ..., "int8_stem": ...}
    onnx_metrics({"int8": True})
    # ["results/metrics/baseline.onnx_fp32.json", "results/metrics/onnx_fp32.json", "results/metrics/onnx_int8.json"]
    onnx_inputs("baseline.", "fp32")   # {"onnx": "results/export/baseline.onnx", "report": "results/export/baseline.json"}

ONNX metrics are `results/metrics/{prefix}onnx_{precision}.json`: an empty prefix is the deployed
model (issue 7's `onnx_fp32.json` / `onnx_int8.json`), `<stage>.` any other stage.
"""
from __future__ import annotations

import re
from typing import Iterable

__all__ = ["DEPLOYED", "RULE_KEYS", "rule_settings", "prefix_pattern", "onnx_metrics", "torch_latencies", "onnx_inputs"]

DEPLOYED = "pruned_finetuned"

# The `export` keys each rule's step reads. A rule gets only these as params, because Snakemake
# reruns a job whose params changed: tuning INT8 must not re-export and re-time the FP32 models.
RULE_KEYS = {
    "export_onnx": ("opset", "parity_tol", "parity_rtol"),
    "quantize_int8": ("calibration_images", "int8_silu", "int8_stem", "int8_calibration", "int8_percentile",
                      "int8_float_layers", "int8_max_error"),
    "latency": ("threads", "latency_runs", "latency_warmup"),  # evaluate_onnx and latency_torch
}


def rule_settings(export_cfg: dict, rule: str) -> dict:
    """The part of the `export` section that `rule` (a RULE_KEYS key) depends on."""
    return {key: export_cfg[key] for key in RULE_KEYS[rule]}


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
