"""Rerun the latency measurement for any exported models and checkpoints; print a markdown table.

    python benchmarks/latency.py results/export/baseline.onnx results/export/pruned_finetuned.onnx \
        results/export/pruned_finetuned.int8.onnx results/baseline.pt --threads 1 --runs 300

.onnx files run in ONNX Runtime on CPU and .pt checkpoints in PyTorch eager, with the settings
of the pipeline's latency (pipeline_lib.export.latency): batch 1 at the model's input size,
fixed intra-op threads, warmup, then median and p90. The models are timed in interleaved
rounds (each round times every model once), so a burst of load on a shared machine hits all of
them alike; speedups are against the first model, over all runs and paired per round (the
median of per-round ratios, which cancels slower phases of a shared host). `--profile` adds ORT's
time per op type. `--provider cuda` (or `tensorrt`) runs the .onnx files on ONNX Runtime's CUDA
(TensorRT) execution provider instead, and fails when that provider cannot be used (ORT would
otherwise fall back to the CPU without a word); `--json` also writes the table's numbers.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np
import torch

from pipeline_lib.errors import UserError
from pipeline_lib.export import latency_stats, make_session, op_profile, read_metadata, time_calls
from pipeline_lib.inputs import as_tuple, ort_feed
from pipeline_lib.tasks import get_task, load_model


PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}


def _session(path: Path, threads: int, provider: str):
    """slimflow's CPU session, or one on `provider` (refused when ORT would run it elsewhere)."""
    if provider == "cpu":
        return make_session(path, threads)
    import onnxruntime as ort
    name = PROVIDERS[provider]
    if name not in ort.get_available_providers():
        raise UserError(f"ONNX Runtime {ort.__version__} has no {name} (available: {ort.get_available_providers()})")
    session = ort.InferenceSession(str(path), providers=[name, "CPUExecutionProvider"])
    if session.get_providers()[0] != name:
        raise UserError(f"{path}: ONNX Runtime fell back to {session.get_providers()} instead of {name}")
    return session


def _runner(path: Path, threads: int, batch: int, imgsz: int | None, provider: str = "cpu"):
    """(runtime name, example input, zero-argument callable running one forward pass)."""
    if path.suffix == ".onnx":
        session, meta = _session(path, threads, provider), read_metadata(path)
        if "family" in meta:  # slimflow's export: the family makes inputs of the right shapes and ranges
            x = get_task(meta["family"]).example_input(imgsz or meta["imgsz"], batch)
        else:
            inp = session.get_inputs()[0]
            dims = [d if isinstance(d, int) else imgsz for d in inp.shape[1:]]  # symbolic H, W need --imgsz
            if None in dims:
                raise UserError(f"{path}: input {inp.name} has symbolic dims {inp.shape}; give --imgsz")
            x = torch.rand(batch, *dims)
        feed = ort_feed(session, x)
        return f"onnxruntime {provider}", x, lambda: session.run(None, feed)
    loaded = load_model(path)
    x = loaded.task.example_input(imgsz or loaded.imgsz, batch)

    def forward():
        with torch.inference_mode():
            loaded.model(*as_tuple(x))
    return "torch eager", x, forward


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+", type=Path, help=".onnx files and/or slimflow .pt checkpoints")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads (ORT and torch)")
    p.add_argument("--runs", type=int, default=200, help="timed runs per model (over all rounds)")
    p.add_argument("--warmup", type=int, default=20, help="untimed runs per model before the first round")
    p.add_argument("--rounds", type=int, default=10, help="interleaved rounds the runs are split into")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--imgsz", type=int, default=None,
                   help="input size for .pt checkpoints (default: the one trained at) and .onnx with symbolic H/W")
    p.add_argument("--profile", action="store_true", help="also print ORT's time per op type for each .onnx")
    p.add_argument("--provider", choices=sorted(PROVIDERS), default="cpu", help="ONNX Runtime's execution provider")
    p.add_argument("--json", type=Path, help="also write each model's median and p90 ms here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        runners = [_runner(m, args.threads, args.batch, args.imgsz, args.provider) for m in args.models]
    except UserError as e:
        sys.exit(f"slimflow error: {e}")
    per_round = max(args.runs // args.rounds, 1)
    times: list[list[float]] = [[] for _ in runners]
    for _, _, fn in runners:
        time_calls(fn, 0, args.warmup)
    for _ in range(args.rounds):
        for i, (_, _, fn) in enumerate(runners):
            times[i].extend(time_calls(fn, per_round, 2))
    stats = [latency_stats(np.array(t), threads=args.threads, batch=args.batch) for t in times]
    # Paired speedups: each round's median against the first model's in the same round. Host noise
    # on a shared VM comes in phases of seconds that shift all models alike, and pairing cancels it.
    round_medians = np.median(np.array(times).reshape(len(runners), args.rounds, per_round), axis=2)
    paired = round_medians[0] / round_medians
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average {load}; "
          f"torch {torch.__version__}; {args.rounds} rounds x {per_round} runs, threads {args.threads}\n")
    print("| model | runtime | input | median ms | p90 ms | speedup (median) | speedup per round (median, p10–p90) |")
    print("|---|---|---|---|---|---|---|")
    for path, (runtime, x, _), s, r in zip(args.models, runners, stats, paired):
        print(f"| {path} | {runtime} | {tuple(as_tuple(x)[0].shape)} | {s['median']:.3f} | {s['p90']:.3f} | "
              f"{stats[0]['median'] / s['median']:.2f}x | {np.median(r):.2f}x ({np.percentile(r, 10):.2f}–"
              f"{np.percentile(r, 90):.2f}) |")
    if args.json:
        args.json.write_text(json.dumps({str(path): {"runtime": runtime, "median_ms": s["median"], "p90_ms": s["p90"]}
                                         for path, (runtime, _, _), s in zip(args.models, runners, stats)}, indent=1))
    if args.profile:
        for path, (runtime, x, _) in zip(args.models, runners):
            if runtime.startswith("onnxruntime"):
                prof = op_profile(path, x, threads=args.threads, runs=args.runs)
                print(f"\n{path}: {prof['model_run_us']:.0f} us per run (profiled), kernels {prof['kernel_us']:.0f} us\n")
                print("| op | us per run | nodes |\n|---|---|---|")
                for op, v in prof["ops"].items():
                    print(f"| {op} | {v['us']:.1f} | {v['nodes']} |")


if __name__ == "__main__":
    main()
