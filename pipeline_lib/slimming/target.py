"""Prune to a target the user states (FLOPs, latency or speedup): a search over the global |γ| threshold.

    kind, goal = target_goal({"speedup": 2.5}, unpruned={"flops": 9.1e8, "latency_ms": 2.4})  # latency_ms, 0.96
    found, probes = bisect(candidate_thresholds(scored, min_channels=8, clamp=True), probe,
                           lambda p: p[kind] <= goal)

Channels are not FLOPs and FLOPs are not latency, so the prune step does not guess a ratio: it
probes thresholds (prune a copy, count its FLOPs, or export it and time it in ONNX Runtime) and
keeps the smallest one, i.e. the fewest channels removed, that meets the target. FLOPs fall
monotonically as the threshold rises; measured latency does too up to timing noise, which is
why every probe is recorded and a search's outcome is reused by reruns (`SearchCache`).
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..chain import TARGET_KEYS, is_timed
from ..errors import UserError
from ..io import read_json, write_json
from ..profile import count_flops
from .plan import PrunePlan, Scored, feasible_threshold, plan_at_threshold, prune_model

__all__ = ["target_goal", "candidate_thresholds", "bisect", "infeasible_message",
           "SearchCache", "search", "plan_to_target"]



def _kind(target: dict) -> tuple[str, float]:
    (kind,) = [k for k in TARGET_KEYS if k in target]
    return kind, float(target[kind])


def target_goal(target: dict, unpruned: dict) -> tuple[str, float]:
    """(probe key, largest allowed value): flops is a fraction of the unpruned model's FLOPs and
    speedup a ratio to its measured latency; latency_ms is absolute."""
    kind, value = _kind(target)
    if kind == "flops":
        return "flops", value * unpruned["flops"]
    if kind == "speedup":
        return "latency_ms", unpruned["latency_ms"] / value
    return "latency_ms", value


def candidate_thresholds(scored: Scored, *, min_channels: int, clamp: bool) -> list[float]:
    """Every distinct |γ| in ascending order: a threshold removes the channels strictly below it,
    so the first removes nothing. Without clamping, only those that leave each group min_channels."""
    values = torch.cat([s for _, _, s in scored]).unique().tolist()
    if not clamp:
        limit = feasible_threshold(scored, min_channels)
        values = [v for v in values if v <= limit]
    return values


def bisect(candidates: list[float], probe: Callable[[float], dict],
           meets: Callable[[dict], bool]) -> tuple[int | None, list[dict]]:
    """Index of the smallest candidate whose probe meets the goal (None: not even the largest
    does), and every probe made, in order. log2(len(candidates)) + 1 probes."""
    probes: list[dict] = []

    def run(i: int) -> bool:
        result = {"threshold": candidates[i], **probe(candidates[i])}
        result["meets"] = bool(meets(result))
        probes.append(result)
        return result["meets"]

    lo, hi = -1, len(candidates) - 1  # candidates[hi] meets; those up to lo do not
    if not run(hi):
        return None, probes
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if run(mid):
            hi = mid
        else:
            lo = mid
    return hi, probes


def infeasible_message(target: dict, best: dict, unpruned: dict, prune_cfg: dict) -> str:
    """One line: the target, the best value the guards allow, and what to change."""
    kind, value = _kind(target)
    reached = {"flops": best["flops"] / unpruned["flops"], "latency_ms": best.get("latency_ms"),
               "speedup": unpruned.get("latency_ms", 0) / best.get("latency_ms", 1)}[kind]
    return (f"prune.target: {kind} {value:g} is not reachable: removing every channel the guards allow "
            f"(prune.min_channels={prune_cfg['min_channels']}, round_to={prune_cfg['round_to']}, "
            f"on_infeasible={prune_cfg['on_infeasible']}; ratio {best['ratio']:.3f}) reaches {kind} {reached:.3g} "
            f"(relax the target{' or set prune.on_infeasible: clamp' if prune_cfg['on_infeasible'] == 'error' else ''})")


class SearchCache:
    """A search's outcome, kept beside prune.json and reused when the same checkpoint is pruned to
    the same target again (a rerun or a resume), so that timing noise cannot move the threshold.

    It is not a Snakemake output, so a rerun does not delete it; delete it to search again.
    """

    def __init__(self, path: str | os.PathLike, parent_sha256: str, settings: dict):
        self.path = Path(path)
        blob = json.dumps({"parent": parent_sha256, **settings}, sort_keys=True).encode()
        self.key = hashlib.sha256(blob).hexdigest()[:16]

    def get(self) -> dict | None:
        return read_json(self.path).get(self.key) if self.path.is_file() else None

    def put(self, outcome: dict) -> None:
        entries = read_json(self.path) if self.path.is_file() else {}
        write_json(self.path, {**entries, self.key: outcome})


def search(model: nn.Module, example: torch.Tensor, scored: Scored, prune_cfg: dict, unpruned: dict,
           time_model: Callable[[nn.Module], float]) -> dict:
    """Probe thresholds until the smallest that meets `prune_cfg["target"]` is found; the outcome
    (threshold, goal, every probe's ratio, FLOPs and latency) as prune.json records it."""
    target, guards = prune_cfg["target"], {k: prune_cfg[k] for k in ("min_channels", "round_to")}
    timed = is_timed(target)
    if timed:
        unpruned = {**unpruned, "latency_ms": time_model(model)}
    kind, goal = target_goal(target, unpruned)

    def probe(threshold: float) -> dict:
        plan = plan_at_threshold(model, scored, threshold, **guards)
        slim = prune_model(copy.deepcopy(model), example, plan)
        result = {"ratio": round(plan.achieved_ratio, 4), "flops": count_flops(slim, example)}
        if timed:
            result["latency_ms"] = time_model(slim)
        return result

    candidates = candidate_thresholds(scored, min_channels=guards["min_channels"],
                                      clamp=prune_cfg["on_infeasible"] == "clamp")
    found, probes = bisect(candidates, probe, lambda p: p[kind] <= goal)
    if found is None:
        raise UserError(infeasible_message(target, probes[0], unpruned, prune_cfg))
    return {"target": target, "goal": {kind: goal}, "unpruned": unpruned, "threshold": candidates[found],
            "probes": probes}


def plan_to_target(model: nn.Module, example: torch.Tensor, scored: Scored, prune_cfg: dict, unpruned: dict,
                   cache: SearchCache, time_model: Callable[[nn.Module], float]) -> tuple[PrunePlan, dict]:
    """The plan at the threshold a search finds, or that `cache` holds from an earlier search of
    the same checkpoint and settings; and the search's record (with "reused": cache path)."""
    outcome = cache.get()
    if outcome is None:
        outcome = search(model, example, scored, prune_cfg, unpruned, time_model)
        cache.put(outcome)
    else:
        outcome = {**outcome, "reused": str(cache.path)}
    plan = plan_at_threshold(model, scored, outcome["threshold"], min_channels=prune_cfg["min_channels"],
                             round_to=prune_cfg["round_to"])
    return plan, outcome
