"""ONNX export of an eval-mode model (dynamic batch, named inputs/outputs) and its ORT parity check.

    proto = export_onnx(model, torch.rand(1, 3, 128, 128), "model.onnx", opset=18,
                        output_names=["detections"], metadata={"imgsz": 128})
    report = check_parity(model, "model.onnx", {"random": torch.rand(2, 3, 128, 128)}, tol=1e-4, rtol=1e-5)
    report["max_abs_diff"]  # e.g. 3e-05; beyond tol + rtol·|output| raises UserError

The graph is what the model computes in eval mode: for the detector that is the decoded
(B, N, 5+nc) tensor (xywh in input pixels, objectness, class scores), so a deployment needs only
NMS after it. Export uses torch.export (`dynamo=True`, the exporter PyTorch maintains); its
optimizer folds BatchNorm into the convolutions and constant-folds the decode grids.
"""
from __future__ import annotations

import json
import os
from typing import Mapping, Sequence

import onnx
import torch
from torch import nn

from ..errors import UserError
from ..inputs import Inputs, as_tuple
from ..io import write_bytes
from .geometry import spatial_dims
from .runtime import OrtModel

__all__ = ["export_onnx", "check_parity", "max_abs_diff"]


def export_onnx(model: nn.Module, example: Inputs, path: str | os.PathLike, *, opset: int = 18,
                input_names: Sequence[str] = ("images",), output_names: Sequence[str] = ("output",),
                metadata: Mapping[str, object] | None = None, dynamic: int = 0) -> onnx.ModelProto:
    """Export `model` (eval mode) for inputs shaped like `example` (one tensor or a tuple, named by
    `input_names`), batch dynamic, and with `dynamic` > 0 the image's height and width too (any
    multiple of `dynamic`: geometry.spatial_dims); check and write it atomically.

    `metadata` values are stored JSON-encoded as `slimflow.<key>` model properties (read them back
    with `runtime.read_metadata`).
    """
    model = model.eval()
    # torch.export specialises a dimension whose example size is 1, so trace with batch 2.
    example = tuple(x[:1].expand(2, *x.shape[1:]).contiguous() for x in as_tuple(example))
    program = torch.onnx.export(model, example, dynamo=True, opset_version=opset, verbose=False,
                                input_names=list(input_names), output_names=list(output_names),
                                dynamic_shapes=spatial_dims(example, dynamic))
    proto = program.model_proto
    for node in proto.graph.node:  # exporter debug info (stack traces with local paths): ~30% of a small model
        del node.metadata_props[:]
    onnx.helper.set_model_props(proto, {f"slimflow.{k}": json.dumps(v) for k, v in (metadata or {}).items()})
    onnx.checker.check_model(proto, full_check=True)  # structure, types and shape inference
    write_bytes(path, proto.SerializeToString())
    return proto


def _outputs(y) -> list[torch.Tensor]:
    return list(y) if isinstance(y, (tuple, list)) else [y]


def max_abs_diff(reference, candidate, rtol: float = 0.0) -> float:
    """Largest |reference - candidate| - rtol·|reference| over all outputs; inf when their number or shapes differ.

    With rtol 0 this is the max abs difference; with rtol > 0 it is what must stay below an
    absolute tolerance for numpy's `allclose(candidate, reference, rtol, atol)`.
    """
    ref, got = _outputs(reference), _outputs(candidate)
    if len(ref) != len(got) or any(r.shape != g.shape for r, g in zip(ref, got)):
        return float("inf")
    return max(float(((r.float() - g.float()).abs() - rtol * r.float().abs()).max()) if r.numel() else 0.0
               for r, g in zip(ref, got))


@torch.no_grad()
def check_parity(model: nn.Module, onnx_path: str | os.PathLike, inputs: Mapping[str, Inputs],
                 tol: float, rtol: float = 0.0, threads: int = 1) -> dict:
    """Run PyTorch and ONNX Runtime on each named input; UserError unless every output element
    satisfies |ort - torch| <= tol + rtol·|torch| (numpy's allclose).

    The relative part is for outputs in large units: float rounding of the convolutions moves a
    logit by a few ulps, and the decode multiplies that by the anchor size for box widths in
    pixels, while scores in [0, 1] stay within ~1e-6.
    Returns {"max_abs_diff", "tolerance", "rtol", "inputs": {name: {"shape", "max_abs_diff", "excess"}}}
    where "excess" is max(|ort - torch| - rtol·|torch|), the number compared with `tol`.
    """
    model = model.eval()
    session = OrtModel(onnx_path, threads)
    per_input = {}
    for name, x in inputs.items():
        ref, got = model(*as_tuple(x)), session(*as_tuple(x))
        per_input[name] = {"shape": list(as_tuple(x)[0].shape), "max_abs_diff": max_abs_diff(ref, got),
                           "excess": max_abs_diff(ref, got, rtol)}
    worst_name = max(per_input, key=lambda k: per_input[k]["excess"])
    worst = per_input[worst_name]
    if worst["excess"] > tol:
        raise UserError(f"{onnx_path}: ONNX Runtime differs from PyTorch by {worst['max_abs_diff']:.3g} on the "
                        f"{worst_name} input {worst['shape']}, beyond export.parity_tol={tol:g} + "
                        f"export.parity_rtol={rtol:g}·|output|; a large gap means an op exported wrongly, a small "
                        f"one float rounding (raise export.parity_rtol)")
    return {"max_abs_diff": max(v["max_abs_diff"] for v in per_input.values()), "tolerance": tol, "rtol": rtol,
            "inputs": per_input}
