"""A prune target's vocabulary: the goals `prune.target` (and a `prune.sweep` point) may name.

    target_kind({"speedup": 2.5})     # ("speedup", 2.5)
    is_timed({"flops": 0.4})          # False: FLOPs are counted, latencies are measured

Config validation, the chain's folder names, the search in `slimming.target` and the report all
speak it, so it sits on the ground floor (docs/ARCHITECTURE.md) and imports nothing but `errors`.
"""
from __future__ import annotations

from .errors import ConfigError

__all__ = ["TARGET_KEYS", "target_kind", "is_timed", "check_int8_targets"]

# prune.target's goals: a fraction of the unpruned FLOPs, a latency, a speedup (slimming.target)
TARGET_KEYS = ("flops", "latency_ms", "speedup")


def target_kind(target: dict) -> tuple[str, float]:
    """(key, value) of a validated prune target's one goal: ("flops", 0.43), ("speedup", 2.5)."""
    (kind,) = [k for k in TARGET_KEYS if k in target]
    return kind, float(target[kind])


def is_timed(target: dict) -> bool:
    """Whether a prune target is judged by a measured latency (so by timing on this machine)."""
    return "flops" not in target


def check_int8_targets(targets: list[tuple[tuple, object]], export_int8) -> None:
    """A target that counts INT8 times an INT8 model: a FLOPs goal has nothing to time, and with
    export.int8 false the chain deploys no INT8 model for it to describe (true and auto do build one)."""
    for where, target in targets:
        if not (isinstance(target, dict) and target.get("int8")):
            continue
        if "flops" in target:
            raise ConfigError(where, "int8: true times the INT8 model, and a flops goal is counted, not timed: "
                              "drop int8 or give speedup or latency_ms")
        if export_int8 is False:
            raise ConfigError(where, "int8: true counts the INT8 model but export.int8 is false (no INT8 model "
                              "is deployed): set export.int8 to true or auto, or drop int8 here")
