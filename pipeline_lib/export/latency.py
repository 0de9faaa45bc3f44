"""Latency at batch 1: ONNX Runtime on CPU (what users deploy) and PyTorch eager (for reference).

    lat = ort_latency("results/export/pruned_finetuned.onnx", torch.rand(1, 3, 128, 128), threads=1, runs=200, warmup=20)
    lat  # {"median": 0.64, "p90": 0.71, "runs": 200, "threads": 1, "batch": 1}   (milliseconds)

Both runtimes get the same fixed thread count, warmup calls that are not timed (allocations,
lazy kernel choice), then `runs` timed calls of one forward pass each; median and p90 summarise
them because a shared CPU adds rare long stalls that would distort a mean. ONNX and ONNX Runtime
are imported by the functions that use them: the PyTorch latency job loads neither.
"""
from __future__ import annotations

import os
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..inputs import Inputs, as_tuple, batch_size, first_rows, ort_feed

__all__ = ["LATENCY_KEYS", "time_calls", "latency_stats", "ort_latency", "ort_geometry_latency", "PairedLatency",
           "torch_latency"]

LATENCY_KEYS = ("median", "p90", "runs", "threads", "batch")


def time_calls(fn: Callable[[], object], runs: int, warmup: int) -> np.ndarray:
    """Seconds taken by each of `runs` calls of `fn`, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = np.empty(runs)
    for i in range(runs):
        start = time.perf_counter()
        fn()
        times[i] = time.perf_counter() - start
    return times


def latency_stats(times_s: np.ndarray, *, threads: int, batch: int) -> dict:
    """DESIGN.md's `latency_ms`: {"median", "p90", "runs", "threads", "batch"}, times in milliseconds."""
    ms = np.asarray(times_s) * 1e3
    return {"median": round(float(np.median(ms)), 4), "p90": round(float(np.percentile(ms, 90)), 4),
            "runs": int(ms.size), "threads": threads, "batch": batch}


def ort_latency(path: str | os.PathLike, example: Inputs, *, threads: int, runs: int, warmup: int) -> dict:
    """ONNX Runtime CPU latency of one `example` batch (see runtime.session_options for the settings)."""
    from .runtime import make_session  # here: PyTorch's latency (torch_latency) needs no ONNX Runtime

    session = make_session(path, threads)
    feed = ort_feed(session, example)
    times = time_calls(lambda: session.run(None, feed), runs, warmup)
    return latency_stats(times, threads=threads, batch=batch_size(example))


def ort_geometry_latency(path: str | os.PathLike, examples: list[tuple[dict, Inputs]], *, runs: int, warmup: int,
                         rounds: int = 5) -> list[dict]:
    """ONNX Runtime latency of one model at each (geometry, example input) pair: one record per
    geometry, {"imgsz", "threads", "batch", "median", "p90", "runs"} (ms). The geometries are timed
    in `rounds` interleaved rounds, so a burst of load on the host falls on all of them alike."""
    from .runtime import make_session

    sessions = {threads: make_session(path, threads) for threads in dict.fromkeys(g["threads"] for g, _ in examples)}
    calls = [partial(sessions[g["threads"]].run, None, ort_feed(sessions[g["threads"]], x)) for g, x in examples]
    for call in calls:
        time_calls(call, 0, warmup)
    per_round = max(runs // rounds, 1)
    by_round = [[time_calls(call, per_round, 1) for call in calls] for _ in range(rounds)]
    times = [np.concatenate(column) for column in zip(*by_round)]
    return [{**g, **latency_stats(t, threads=g["threads"], batch=g["batch"])} for (g, _), t in zip(examples, times)]


class PairedLatency:
    """ORT latency of exported candidates, each timed in rounds interleaved with a reference model.

        timer = PairedLatency(unpruned, example, threads=1, runs=50)
        timer(slim)  # {"latency_ms": 0.71, "speedup": 2.4}  (and "geometry": the `geometry` given, recorded)

    A burst of load on the host hits both models of a round alike, so the speedup (median of the
    per-round ratios) is far steadier than two latencies taken minutes apart. Models are exported
    as the export step exports them (torch.export, to a temporary file); `candidate_export(model,
    folder)`, when given, makes each candidate's ONNX file instead (e.g. its INT8 model) and returns
    its path, while the reference stays the FP32 export; `candidate_transform(model)`, when given,
    is the model each candidate is deployed as (another activation, say) and what gets exported.
    """

    def __init__(self, reference: nn.Module, example: Inputs, *, threads: int, runs: int, rounds: int = 5,
                 geometry: dict | None = None, candidate_export: Callable[[nn.Module, Path], Path] | None = None,
                 candidate_transform: Callable[[nn.Module], nn.Module] | None = None):
        self.example, self.threads, self.rounds, self.geometry = example, threads, rounds, geometry
        self.per_round = max(runs // rounds, 1)
        self.candidate_export, self.candidate_transform = candidate_export, candidate_transform
        self.reference = self._runner(reference)

    def _export_fp32(self, model: nn.Module, folder: Path) -> Path:
        from .onnx_export import export_onnx

        export_onnx(model, self.example, folder / "model.onnx")
        return folder / "model.onnx"

    def _runner(self, model: nn.Module, export: Callable[[nn.Module, Path], Path] | None = None) -> Callable[[], object]:
        from .runtime import make_session

        with tempfile.TemporaryDirectory() as tmp:  # the session holds the model: the file can go
            session = make_session((export or self._export_fp32)(model, Path(tmp)), self.threads)
        feed = ort_feed(session, first_rows(self.example, 1))
        return lambda: session.run(None, feed)

    def __call__(self, model: nn.Module) -> dict:
        candidate = self._runner(self.candidate_transform(model) if self.candidate_transform else model,
                                 self.candidate_export)
        timed = lambda run: np.median(time_calls(run, self.per_round, 2))  # noqa: E731
        pairs = [(timed(self.reference), timed(candidate)) for _ in range(self.rounds)]
        return {"latency_ms": round(float(np.median([c for _, c in pairs])) * 1e3, 4),
                "speedup": round(float(np.median([r / c for r, c in pairs])), 3),
                **({"geometry": self.geometry} if self.geometry else {})}


@torch.inference_mode()
def torch_latency(model: nn.Module, example: Inputs, *, threads: int, runs: int, warmup: int) -> dict:
    """PyTorch eager CPU latency of one `example` batch, with torch's intra-op threads set to `threads`."""
    model = model.eval()
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        times = time_calls(lambda: model(*as_tuple(example)), runs, warmup)
    finally:
        torch.set_num_threads(previous)
    return latency_stats(times, threads=threads, batch=batch_size(example))
