"""`export.int8: auto`: whether the INT8 model is worth deploying beside its own FP32.

    int8_verdict({"mAP50_95": 0.673, "latency_ms": 0.835}, {"mAP50_95": 0.670, "latency_ms": 0.888},
                 "mAP50_95", max_drop=0.01)
    # {"keep": False, "reason": "INT8 runs 0.94x its FP32's speed (0.888 ms against 0.835 ms) ..."}

INT8 is not faster on every model: a slim network whose activations stay float between dequantize
and quantize can run slower than its FP32 (docs/EXPORT.md). Both models are built and evaluated
either way; this decides which one the summary names as deployed, and says why.
"""
from __future__ import annotations

from typing import Mapping

__all__ = ["int8_verdict"]


def int8_verdict(fp32: Mapping, int8: Mapping, metric: str, max_drop: float, latency: str = "latency_ms",
                 where: str = "") -> dict:
    """{"keep": bool, "reason": one sentence}: keep INT8 when its median latency (the `latency` entry,
    timed at the geometry `where` names) is below FP32's and its `metric` (higher is better) is at
    most `max_drop` below FP32's."""
    speedup = fp32[latency] / int8[latency]
    drop = fp32[metric] - int8[metric]
    speed = f"{speedup:.2f}x its FP32's speed ({int8[latency]:.3g} ms against {fp32[latency]:.3g} ms{where})"
    accuracy = f"{metric} {int8[metric]:.4g} against {fp32[metric]:.4g} (allowed drop {max_drop:g})"
    if speedup <= 1:
        return {"keep": False, "reason": f"dropped: INT8 is not faster, {speed}; {accuracy}"}
    if drop > max_drop:
        return {"keep": False, "reason": f"dropped: INT8 loses {drop:.4g} {metric}, {accuracy}; {speed}"}
    return {"keep": True, "reason": f"kept: INT8 runs {speed}; {accuracy}"}
