"""Export one detector checkpoint at deployment sizes with each way of running its activation in INT8.

    python benchmarks/int8_silu.py runs/default/results/pruned.pt runs/int8-silu --sizes 640 128

For each size S it writes OUT/silu_S.onnx (FP32) and its INT8 models OUT/silu_S.int8-{float,int8,lut}.onnx
(`export.int8_silu`: SiLU as float QuickGelu, as QLinearSigmoid + QLinearMul, as a 256-entry table),
and the same network with its SiLUs swapped (`--acts`, default relu, hardswish, leaky_relu) as
OUT/ACT_S.onnx and OUT/ACT_S.int8-float.onnx, printing the kernels ONNX Runtime runs for each INT8
model. Time them with benchmarks/latency.py. The graph is exported at S x S (the detector is fully
convolutional; parity against PyTorch is checked at S), and INT8 is calibrated on 4 random images:
latency does not depend on the weights' values, so this measures speed, not accuracy (the
chain's own quantize step measures that).
"""
from __future__ import annotations

import argparse
import copy
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipeline_lib.export import check_parity, export_onnx, kernel_counts, quantize_int8
from pipeline_lib.tasks import load_model
from pipeline_lib.tasks.detection.model import ACTIVATIONS, Conv


def _with_activation(model: nn.Module, act: str) -> nn.Module:
    swapped = copy.deepcopy(model)
    for m in swapped.modules():
        if isinstance(m, Conv):
            m.act = ACTIVATIONS[act]()
    return swapped.eval()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", type=Path, help="a detection checkpoint (e.g. results/pruned.pt)")
    p.add_argument("out", type=Path, help="folder for the .onnx files")
    p.add_argument("--sizes", type=int, nargs="+", default=[640], help="input sizes (multiples of 32)")
    p.add_argument("--acts", nargs="*", default=["relu", "hardswish", "leaky_relu"], choices=sorted(ACTIVATIONS),
                   help="activations swapped in for SiLU (INT8 with each as the quantizer leaves it)")
    args = p.parse_args(argv)
    loaded = load_model(args.checkpoint, family="detection")
    names = {m: n for n, m in loaded.model.named_modules()}
    heads = [f"{names[m]}.weight" for m in loaded.task.int8_float_modules(loaded.model)]
    args.out.mkdir(parents=True, exist_ok=True)
    for act in ["silu", *args.acts]:
        model = _with_activation(loaded.model, act)
        for size in args.sizes:
            fp32, x = args.out / f"{act}_{size}.onnx", torch.rand(1, 3, size, size)
            export_onnx(model, x, fp32, output_names=list(loaded.task.output_names),
                        metadata={"family": "detection", "imgsz": size, "heads": heads, "precision": "fp32"})
            parity = check_parity(model, fp32, {"random": x}, tol=1e-3, rtol=1e-4)["max_abs_diff"]
            print(f"{fp32}: parity max abs diff {parity:.3g}")
            batches = [np.random.default_rng(i).random((1, 3, size, size), dtype=np.float32) for i in range(4)]
            for silu in ("float", "int8", "lut") if act == "silu" else ("float",):
                out = args.out / f"{act}_{size}.int8-{silu}.onnx"
                quantize_int8(fp32, out, batches, keep_float_after=heads, float_heads=True, stem="space_to_depth",
                              silu=silu, metadata={"precision": "int8"})
                print(f"{out}: {kernel_counts(out)}")


if __name__ == "__main__":
    main()
