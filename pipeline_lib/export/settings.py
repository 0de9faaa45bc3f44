"""The `export` keys each deployment step reads (the workflow reads this without torch or ONNX Runtime).

    rule_settings(config["export"], "quantize_int8")  # {"calibration_images": 100, "int8_silu": ..., "int8_stem": ...}
"""
from __future__ import annotations

__all__ = ["RULE_KEYS", "rule_settings"]

# A rule gets only these as params, because Snakemake reruns a job whose params changed: tuning
# INT8 must not re-export and re-time the FP32 models.
RULE_KEYS = {
    "export_onnx": ("opset", "parity_tol", "parity_rtol"),
    "quantize_int8": ("calibration_images", "int8_silu", "int8_stem", "int8_calibration", "int8_percentile",
                      "int8_float_layers", "int8_max_error"),
    "latency": ("threads", "latency_runs", "latency_warmup", "deploy"),  # evaluate_onnx and latency_torch
}


def rule_settings(export_cfg: dict, rule: str) -> dict:
    """The part of the `export` section that `rule` (a RULE_KEYS key) depends on."""
    return {key: export_cfg[key] for key in RULE_KEYS[rule]}
