"""Channel widths the deployment runtime likes: what `prune.round_to: auto` rounds kept channels to.

    resolve_round_to("auto")  # 16 on a CPU with AVX-512, 8 elsewhere
    resolve_round_to(4)       # 4

ONNX Runtime's CPU convolutions (MLAS) compute in NCHWc layout, channels in blocks of 16 where
the CPU has AVX-512 and of 8 with AVX2. A convolution whose channel counts are not multiples of
the block runs a slower path, and ORT adds layout reorders around it; benchmarks/widths.py
measures the cost per width (docs/EXPORT.md). Pruning to a multiple of the block keeps every
convolution on the fast path. Stdlib only: the Snakefile resolves it while building the DAG, so
moving a run to a CPU with another block reruns the prune (its params change).
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["cpu_flags", "runtime_block", "resolve_round_to"]


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str]:
    """The CPU's feature flags (Linux); empty where /proc/cpuinfo is absent."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return set()
    return {flag for line in text.splitlines() if line.startswith(("flags", "Features")) for flag in line.split(":", 1)[1].split()}


def runtime_block(flags: set[str] | None = None) -> int:
    """ONNX Runtime's CPU channel block: 16 with AVX-512 (avx512f), else 8."""
    return 16 if "avx512f" in (cpu_flags() if flags is None else flags) else 8


def resolve_round_to(value: int | str) -> int:
    """`prune.round_to` as a number: "auto" is the runtime's channel block."""
    return runtime_block() if value == "auto" else int(value)
