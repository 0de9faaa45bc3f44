"""The vocabulary of a prune target: which goals there are and how to read one.

    target_kind({"speedup": 2.5})   # ("speedup", 2.5)
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
