"""Denormal (subnormal) floats in an exported model: zero the weights that hold them, detect the arithmetic.

    report = zero_tiny_weights("model.onnx")   # rewrites the file; {"zeroed": 12, "tensors": {...}, ...}
    check = denormal_check("model.onnx", example, threads=1, runs=100)
    check["denormal_arithmetic"], check["ftz_speedup"]   # True, 31.2

A float32 below 2^-126 (1.18e-38) is subnormal, and x86 CPUs multiply it on a microcode path up
to ~100× slower unless flush-to-zero is set. ReLU channels that never fire get no gradient, and
weight decay shrinks their weights geometrically into that range; BatchNorm folding multiplies
them by a tiny γ (L1 on γ drives dead channels' γ to the same range). Zeroing them changes
nothing a float32 output can show, and removes the slow path: see `zero_tiny_weights` for the rule.
"""
from __future__ import annotations

import os

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import numpy_helper

from ..inputs import Inputs, ort_feed
from ..io import write_bytes
from .latency import time_calls
from .runtime import make_session, session_options

__all__ = ["SMALLEST_NORMAL", "RELATIVE_EXPONENT", "subnormal_count", "zero_tiny_weights", "denormal_check",
           "denormal_warning"]

SMALLEST_NORMAL = float(np.finfo(np.float32).tiny)  # 2^-126 ≈ 1.18e-38
# A weight below max|w|·2^-40 moves an output by at most fan_in·2^-40 of that output's largest
# term: under float32's own rounding of the sum (2^-24 of it) for any fan-in up to 2^16.
RELATIVE_EXPONENT = 40
WEIGHT_OPS = {"Conv": 1, "ConvTranspose": 1, "Gemm": 1, "MatMul": 1}  # op type -> index of its weight input
FTZ_FLAG_RATIO = 1.5  # interleaved medians on a shared host vary by ~10%; denormal models run 5-30× slower


def subnormal_count(array: np.ndarray) -> int:
    """Non-zero float32 values below the smallest normal (0 for other dtypes)."""
    if array.dtype != np.float32:
        return 0
    magnitude = np.abs(array)
    return int(np.count_nonzero((magnitude > 0) & (magnitude < SMALLEST_NORMAL)))


def zero_tiny_weights(path: str | os.PathLike) -> dict:
    """Set to zero the float32 weights of Conv/ConvTranspose/Gemm/MatMul below max(2^-126, max|w|·2^-40)
    of their own tensor; rewrite the file (atomically) when any changed.

    Only multiply weights: a constant elsewhere (an epsilon, a grid) may be small on purpose.
    Returns {"rule", "zeroed", "subnormal", "tensors": {name: {"zeroed", "subnormal", "size"}}}
    with "subnormal" counted before zeroing and "tensors" listing only the tensors that changed.
    """
    proto = onnx.load(str(path))
    weights = {node.input[WEIGHT_OPS[node.op_type]] for node in proto.graph.node
               if node.op_type in WEIGHT_OPS and len(node.input) > WEIGHT_OPS[node.op_type]}
    tensors = {}
    for init in proto.graph.initializer:
        if init.name not in weights or init.data_type != onnx.TensorProto.FLOAT:
            continue
        w = numpy_helper.to_array(init)
        if not w.size:
            continue
        tiny = (w != 0) & (np.abs(w) < max(SMALLEST_NORMAL, float(np.abs(w).max()) * 2.0 ** -RELATIVE_EXPONENT))
        if tiny.any():
            tensors[init.name] = {"zeroed": int(tiny.sum()), "subnormal": subnormal_count(w), "size": int(w.size)}
            init.CopyFrom(numpy_helper.from_array(np.where(tiny, np.float32(0), w), init.name))
    if tensors:
        write_bytes(path, proto.SerializeToString())
    return {"rule": f"|w| < max(2^-126, max|w| of its tensor · 2^-{RELATIVE_EXPONENT}), multiply weights only",
            "zeroed": sum(t["zeroed"] for t in tensors.values()),
            "subnormal": sum(t["subnormal"] for t in tensors.values()), "tensors": tensors}


def _subnormal_values(path: str | os.PathLike, example: Inputs) -> dict:
    """Subnormal float32 values among the model's weights and every node output on `example`."""
    proto = onnx.load(str(path))
    weights = sum(subnormal_count(numpy_helper.to_array(t)) for t in proto.graph.initializer
                  if t.data_type == onnx.TensorProto.FLOAT)
    known = {o.name for o in proto.graph.output}
    proto.graph.output.extend(onnx.ValueInfoProto(name=name) for node in proto.graph.node
                              for name in node.output if name and name not in known)
    session = make_session(proto.SerializeToString(), 1)
    activations = sum(subnormal_count(a) for a in session.run(None, ort_feed(session, example))
                      if isinstance(a, np.ndarray))
    return {"weights": weights, "activations": activations}


def _ftz_speedup(path: str | os.PathLike, example: Inputs, threads: int, runs: int, rounds: int = 5) -> float:
    """Median over interleaved rounds of (time as is) / (time with flush-to-zero and denormals-are-zero).

    torch.set_flush_denormal sets FTZ/DAZ on the calling thread, where a 1-thread session runs;
    ORT's session.set_denormal_as_zero sets them on its pool threads for more than one.
    """
    options = session_options(threads)
    options.add_session_config_entry("session.set_denormal_as_zero", "1")
    plain = make_session(path, threads)
    flushed = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = ort_feed(plain, example)
    per_round, ratios = max(runs // (4 * rounds), 2), []  # half the latency measurement's runs in all
    try:
        for _ in range(rounds):
            torch.set_flush_denormal(False)
            slow = np.median(time_calls(lambda: plain.run(None, feed), per_round, 1))
            torch.set_flush_denormal(True)
            fast = np.median(time_calls(lambda: flushed.run(None, feed), per_round, 1))
            ratios.append(slow / fast)
    finally:
        torch.set_flush_denormal(False)  # torch's default; it has no getter to restore another
    return round(float(np.median(ratios)), 3)


def denormal_check(path: str | os.PathLike, example: Inputs, *, threads: int, runs: int) -> dict:
    """{"denormal_arithmetic", "subnormal_weights", "subnormal_activations", "ftz_speedup", "ftz_flag_ratio"}.

    "denormal_arithmetic" is the deterministic signal: a float32 weight or node output on
    `example` is subnormal, so some multiply reads one. "ftz_speedup" is what it costs on this
    CPU (latency as is over latency with flush-to-zero, interleaved; ~1 on ARM, which handles
    subnormals in hardware); above "ftz_flag_ratio" the model is slow because of them.
    """
    counts = _subnormal_values(path, example)
    return {"denormal_arithmetic": counts["weights"] + counts["activations"] > 0,
            "subnormal_weights": counts["weights"], "subnormal_activations": counts["activations"],
            "ftz_speedup": _ftz_speedup(path, example, threads, runs), "ftz_flag_ratio": FTZ_FLAG_RATIO}


def denormal_warning(path: str | os.PathLike, check: dict) -> str:
    """The one log line for a model that runs denormal arithmetic (`denormal_check`'s record)."""
    return (f"{path}: {check['subnormal_weights']} subnormal weights and {check['subnormal_activations']} subnormal "
            f"activations on the latency input: denormal arithmetic, {check['ftz_speedup']}× slower here than with "
            f"flush-to-zero (x86 CPUs can be 30× slower); re-export it (slimflow's export zeroes tiny weights), or "
            f"enable flush-to-zero where it runs (ORT session config session.set_denormal_as_zero=1 and FTZ/DAZ on "
            f"the calling thread)")
