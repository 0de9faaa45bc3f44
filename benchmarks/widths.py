"""What ONNX Runtime charges per channel width: the data behind `prune.round_to: auto`.

    python benchmarks/widths.py --widths 8-96:4 --size 16 --kernel 3 --threads 1 --rounds 30

For each width w, a stack of `--layers` k x k convolutions w -> w (`--kernel`, 3 or 1) (+ ReLU, as the default detector
has them after BN folding) at `--size` x `--size` pixels is exported and timed in ONNX Runtime with
the pipeline's session settings, all widths in interleaved rounds so load on a shared host hits
them alike. The table gives the median latency and the time per MFLOP: a width the runtime's
kernels like costs less per FLOP than its neighbours. ONNX Runtime's CPU convolutions run in
NCHWc blocks of 16 channels with AVX-512 and 8 with AVX2; other widths pay for layout reorders
and remainder loops, which is what `round_to: auto` avoids (pipeline_lib/widths.py).
The models are exported with torch.onnx's TorchScript exporter (a fraction of a second each,
against seconds for torch.export); ORT fuses Conv + ReLU the same way for both.
"""
from __future__ import annotations

import argparse
import io
import platform
import sys
import warnings

import numpy as np
import torch
from torch import nn

from pipeline_lib.export import make_session, time_calls
from pipeline_lib.widths import runtime_block


def _widths(spec: str) -> list[int]:
    start, rest = spec.split("-")
    stop, step = (rest.split(":") + ["1"])[:2]
    return list(range(int(start), int(stop) + 1, int(step)))


def _session(width: int, size: int, layers: int, kernel: int, threads: int):
    convs = [m for _ in range(layers) for m in (nn.Conv2d(width, width, kernel, padding=kernel // 2), nn.ReLU())]
    model = nn.Sequential(*convs).eval()
    x = torch.rand(1, width, size, size)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), buffer, dynamo=False, opset_version=18)
    session = make_session(buffer.getvalue(), threads)
    feed = {session.get_inputs()[0].name: x.numpy()}
    mflops = layers * 2 * width * width * kernel**2 * size * size / 1e6
    return session, feed, mflops


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", default="8-96:4", help="start-stop[:step], inclusive")
    parser.add_argument("--size", type=int, default=16, help="feature map side in pixels")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--kernel", type=int, default=3, help="3: the detector's 3x3 convs, 1: its 1x1 convs")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=20, help="timed calls per width per round")
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args(argv)
    widths = _widths(args.widths)
    sessions = {w: _session(w, args.size, args.layers, args.kernel, args.threads) for w in widths}
    times = {w: [] for w in widths}
    for _ in range(args.rounds):
        for w, (session, feed, _) in sessions.items():
            run = lambda: session.run(None, feed)  # noqa: E731
            times[w].append(float(np.median(time_calls(run, args.runs, warmup=1))) * 1e3)
    print(f"{platform.processor() or platform.machine()}, ORT block {runtime_block()} channels; {args.layers} x "
          f"{args.kernel}x{args.kernel} conv w->w + ReLU at {args.size}x{args.size}, {args.threads} thread(s), {args.rounds} rounds x "
          f"{args.runs} runs\n")
    print("| width | median ms | µs per MFLOP | multiple of |\n|---|---|---|---|")
    for w in widths:
        ms = float(np.median(times[w]))
        multiple = next((m for m in (16, 8, 4) if w % m == 0), 1)
        print(f"| {w} | {ms:.4f} | {1e3 * ms / sessions[w][2]:.2f} | {multiple} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
