"""Which layers to keep float in INT8: per-layer sensitivity measured as output error against FP32.

    error = output_error(fp32_outputs, int8_outputs)        # 0.02: errors of 2% of each output's spread
    selection = select_float_layers("model.onnx", batches, max_error=0.05, keep_float_after=heads, float_heads=True)
    # {"float_layers": ["stage2.0.conv"], "error_all_int8": 0.09, "error": 0.04, "layers": [{...}, ...]}

Why output error and not the family's metric: one probe is a `quantize_int8` call and one batched
ORT run over the calibration images (seconds on 2 cores), while a metric would add the family's
evaluation on the val split to each of 50-60 probes, and choosing layers on the val split would
leave the reported INT8 metric selected on its own test data. The error is measured on the
calibration images, the data the quantizer already sees.

The search: quantize everything (the fixed rules of `quantize_int8` still apply), then once more per
layer with that one layer float; a layer's sensitivity is how much error disappears when it stays
float. Layers are then kept float in order of sensitivity, one more per probe, until the error is
within the budget: the smallest prefix of the ranking, not the smallest set over all combinations
(which would need exponentially many probes). Cost: 1 + layers + kept float quantizations.
"""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from ..inputs import concat_batches, ort_feed
from .quantize import quantize_int8
from .runtime import make_session

__all__ = ["output_error", "run_outputs", "select_float_layers"]

log = logging.getLogger("slimflow")


def output_error(reference: Sequence[np.ndarray], outputs: Sequence[np.ndarray]) -> float:
    """RMS difference of each output column (last axis) over its FP32 standard deviation, averaged.

    Per column because a detector's columns differ in scale (boxes in pixels, scores in [0, 1]):
    a plain relative error would only see the boxes.
    """
    errors = []
    for ref, out in zip(reference, outputs):
        ref, out = ref.reshape(-1, ref.shape[-1]), out.reshape(-1, out.shape[-1])
        errors.append(np.sqrt(((out - ref) ** 2).mean(0)) / np.maximum(ref.std(0), 1e-6))
    return float(np.concatenate(errors).mean())


def run_outputs(path: str | os.PathLike, inputs) -> list[np.ndarray]:
    """Every output of an ONNX model for one batch (ORT as deployed, 1 thread)."""
    session = make_session(path, 1)
    return session.run(None, ort_feed(session, inputs))


def select_float_layers(fp32_path: str | os.PathLike, batches: Sequence[np.ndarray], *, max_error: float,
                        **quantize_kwargs) -> dict:
    """Measure each quantizable layer's sensitivity and pick the layers to keep float (see the module doc).

    `quantize_kwargs` are `quantize_int8`'s settings (rules, calibration); the result has the chosen
    `float_layers`, the errors of the all-INT8 model and of the chosen one, the probes of the
    search and one row per quantizable layer: layer, sensitivity, error when float, kept float.
    """
    images = concat_batches(batches)
    reference = run_outputs(fp32_path, images)
    with tempfile.TemporaryDirectory() as tmp:
        # calibrated once: every probe quantizes with the same ranges, so only the float layer differs
        quantize_kwargs = {**quantize_kwargs, "calibration_cache": Path(tmp) / "ranges.json"}

        def probe(float_layers: Sequence[str]) -> float:
            out = Path(tmp) / "probe.int8.onnx"
            quantize_int8(fp32_path, out, batches, float_layers=float_layers, **quantize_kwargs)
            return output_error(reference, run_outputs(out, images))

        out_all = Path(tmp) / "all.int8.onnx"
        layers = quantize_int8(fp32_path, out_all, batches, **quantize_kwargs)["quantizable_layers"]
        error_all = output_error(reference, run_outputs(out_all, images))
        alone = {layer: probe([layer]) for layer in layers}
        ranking = sorted((layer for layer in layers if alone[layer] < error_all), key=alone.get)
        chosen, error, search = [], error_all, []
        while error > max_error and len(chosen) < len(ranking):
            chosen = ranking[:len(chosen) + 1]
            error = probe(chosen)
            search.append({"float_layers": len(chosen), "error": error})
    if error > max_error:
        log.warning("INT8: %.4g output error with every helpful layer float (%d), above export.int8_max_error %g",
                    error, len(chosen), max_error)
    table = [{"layer": layer, "sensitivity": error_all - alone[layer], "error_when_float": alone[layer],
              "float": layer in chosen} for layer in layers]
    return {"float_layers": chosen, "max_error": max_error, "error_all_int8": error_all, "error": error,
            "search": search, "layers": sorted(table, key=lambda row: -row["sensitivity"])}
