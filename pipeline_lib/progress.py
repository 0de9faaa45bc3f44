"""One line per training epoch and per prune-target probe, in the step's log and on the terminal.

    clock = StageClock(epochs=30, done=0)
    progress.info(epoch_line("baseline", row, epochs=30, seconds=41.2, eta=clock.eta(row["epoch"])))
    # baseline epoch 3/30: loss box=0.0512 obj=0.0213 | val mAP50_95=0.412 | 41.2s, stage ETA 18m32s

A step's log (results/logs/<step>.log) receives every record of the "slimflow" logger; records of
"slimflow.progress" also reach the terminal (`runner.run_logged` adds that handler), because
Snakemake prints a running job's stderr as it comes while `log:` files are shown only after a job
fails. One line per event, no carriage returns: the same line reads well in a file and a terminal.
"""
from __future__ import annotations

import logging
import time
from typing import Any

__all__ = ["progress", "StageClock", "duration", "epoch_line", "probe_line"]

progress = logging.getLogger("slimflow.progress")  # a child: its records reach the step's log too


def duration(seconds: float) -> str:
    """41s, 4m08s, 1h02m: as short as the magnitude allows."""
    seconds = max(round(seconds), 0)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class StageClock:
    """The stage's time left: the mean wall time of the epochs this process ran (validation
    included) times the epochs still to run. Epochs done before a resume are not timed here."""

    def __init__(self, epochs: int, done: int):
        self.epochs, self.first, self.start = epochs, done, time.monotonic()

    def eta(self, done: int) -> float:
        ran = done - self.first
        return (time.monotonic() - self.start) / ran * (self.epochs - done) if ran > 0 else float("nan")


def _values(row: dict[str, Any], prefix: str) -> str:
    return " ".join(f"{k[len(prefix):]}={v:.4g}" for k, v in row.items()
                    if k.startswith(prefix) and isinstance(v, (int, float)))


def epoch_line(stage: str, row: dict[str, Any], *, epochs: int, seconds: float, eta: float) -> str:
    """Stage, epoch i/n, the epoch's mean training losses, the validation metrics when this epoch
    was evaluated, its wall time and the stage's time left."""
    parts = [f"{stage} epoch {row['epoch']}/{epochs}: loss {_values(row, 'train/')}"]
    if any(k.startswith("metrics/") for k in row):
        parts.append(f"val {_values(row, 'metrics/')}")
    left = "done" if row["epoch"] == epochs else f"stage ETA {duration(eta)}" if eta == eta else "stage ETA ?"
    parts.append(f"{seconds:.1f}s, {left}")
    return " | ".join(parts)


def probe_line(index: int, probe: dict[str, Any], goal: dict[str, float]) -> str:
    """A prune-target probe: its threshold, the ratio it prunes, what was measured, met or not."""
    measured = [f"FLOPs {probe['flops']:.4g}"]  # 4 digits: probes near the goal differ in the third
    measured += [f"latency {probe['latency_ms']:.3g} ms"] if "latency_ms" in probe else []
    measured += [f"speedup {probe['speedup']:.3g}x"] if "speedup" in probe else []
    measured += ["timed as INT8 against the unpruned FP32"] if probe.get("geometry", {}).get("precision") == "int8" else []
    measured += ["the same model as an earlier probe (not timed again)" if probe.get("same_model")
                 else f"in {probe['probe_s']:.1f} s"] if "probe_s" in probe else []
    wanted = ", ".join(f"{k} {'>=' if k == 'speedup' else '<='} {v:.4g}" for k, v in goal.items())
    # |γ| of briefly trained networks cluster within 1e-4 of each other: 6 digits tell probes apart
    return (f"prune target probe {index}: |γ| threshold {probe['threshold']:.6g}, ratio {probe['ratio']:.3f}, "
            f"{', '.join(measured)}: {'meets' if probe['meets'] else 'misses'} {wanted}")
