"""A prune target's vocabulary: the goals `prune.target` (and a `prune.sweep` point) may name.

    target_kind({"speedup": 2.5})     # ("speedup", 2.5)
    is_timed({"flops": 0.4})          # False: FLOPs are counted, latencies are measured

Config validation, the chain's folder names, the search in `slimming.target` and the report all
speak it, so it sits on the ground floor (docs/ARCHITECTURE.md) and imports nothing.
"""
from __future__ import annotations

__all__ = ["TARGET_KEYS", "target_kind", "is_timed"]

# prune.target's goals: a fraction of the unpruned FLOPs, a latency, a speedup (slimming.target)
TARGET_KEYS = ("flops", "latency_ms", "speedup")


def target_kind(target: dict) -> tuple[str, float]:
    """(key, value) of a validated prune target's one goal: ("flops", 0.43), ("speedup", 2.5)."""
    (kind,) = [k for k in TARGET_KEYS if k in target]
    return kind, float(target[kind])


def is_timed(target: dict) -> bool:
    """Whether a prune target is judged by a measured latency (so by timing on this machine)."""
    return "flops" not in target
