"""Time a ReLU conv net with denormal weights as exported, with those weights zeroed, and with
flush-to-zero; and what the latency step's denormal check costs on exported models.

    python benchmarks/denormals.py --imgsz 128 --runs 200 --rounds 10 [results/export/*.onnx]

The net: 3×3 Conv+ReLU layers 3→32→64→64→64 and a 1×1 conv to 8, with half the output channels of
every conv after the first holding weights ~1e-39 and no bias (what weight decay leaves in ReLU
channels that never open; their activations are subnormal too). ONNX Runtime CPU, 1 thread,
batch 1, interleaved rounds (each round times every variant once). Prints a markdown table.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipeline_lib.export import denormal_check, export_onnx, load_onnx, make_session, time_calls, zero_tiny_weights
from pipeline_lib.inputs import ort_feed


def dead_channel_net() -> nn.Module:
    torch.manual_seed(0)
    layers, width = [], 3
    for out in (32, 64, 64, 64):
        layers += [nn.Conv2d(width, out, 3, padding=1), nn.ReLU()]
        width = out
    model = nn.Sequential(*layers, nn.Conv2d(width, 8, 1)).eval()
    with torch.no_grad():
        for conv in [m for m in model if isinstance(m, nn.Conv2d)][1:]:
            dead = conv.out_channels // 2
            conv.weight[:dead] = torch.randn_like(conv.weight[:dead]) * 1e-39
            conv.bias[:dead] = 0
    return model


def timed_variants(folder: Path, imgsz: int, runs: int, rounds: int) -> dict[str, float]:
    """Median ms per variant over interleaved rounds."""
    x = torch.rand(1, 3, imgsz, imgsz)
    export_onnx(dead_channel_net(), x, folder / "denormal.onnx")
    shutil.copy(folder / "denormal.onnx", folder / "zeroed.onnx")
    print("zeroed:", zero_tiny_weights(folder / "zeroed.onnx")["zeroed"], "weights")
    sessions = {name: make_session(folder / f"{name}.onnx", 1) for name in ("denormal", "zeroed")}
    feed = ort_feed(sessions["denormal"], x)
    variants = {"as exported": (sessions["denormal"], False), "weights zeroed": (sessions["zeroed"], False),
                "as exported, flush-to-zero": (sessions["denormal"], True)}
    times = {name: [] for name in variants}
    for _ in range(rounds):
        for name, (session, ftz) in variants.items():
            torch.set_flush_denormal(ftz)
            times[name].extend(time_calls(lambda: session.run(None, feed), max(runs // rounds, 1), 2))
    torch.set_flush_denormal(False)
    return {name: float(np.median(t)) * 1e3 for name, t in times.items()}


def check_costs(models: list[Path], runs: int) -> None:
    for path in models:
        loaded = load_onnx(path)
        start = time.perf_counter()
        check = denormal_check(path, loaded.task.example_input(loaded.imgsz, 1), threads=1, runs=runs)
        print(f"| {path} | {loaded.imgsz} | {time.perf_counter() - start:.2f} s | {check} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="*", type=Path, help="exported models to run the denormal check on")
    p.add_argument("--imgsz", type=int, default=128)
    p.add_argument("--runs", type=int, default=200, help="timed runs per variant over all rounds")
    p.add_argument("--rounds", type=int, default=10)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        medians = timed_variants(Path(tmp), args.imgsz, args.runs, args.rounds)
    print(f"\n| variant ({args.imgsz} px, 1 thread, batch 1) | median ms | vs as exported |\n|---|---|---|")
    for name, ms in medians.items():
        print(f"| {name} | {ms:.3f} | {medians['as exported'] / ms:.2f}× |")
    if args.models:
        print("\n| model | imgsz | denormal_check time | record |\n|---|---|---|---|")
        check_costs(args.models, args.runs)


if __name__ == "__main__":
    main()
