"""Prune to a target the user states (FLOPs, latency or speedup): a search over the global |γ| threshold.

    goal, meets = target_goal({"flops": 0.4}, unpruned={"flops": 9.1e8})  # {"flops": 3.64e8}, p["flops"] <= 3.64e8
    found, probes = bisect(candidate_thresholds(scored, min_channels=8, clamp=True), probe, meets)

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
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..errors import UserError
from ..inputs import Inputs
from ..io import read_json, write_json
from ..profile import count_flops
from ..progress import probe_line, progress
from ..targets import is_timed, target_kind
from .plan import PrunePlan, Scored, feasible_threshold, plan_at_threshold, prune_model

__all__ = ["target_goal", "candidate_thresholds", "bisect", "infeasible_message",
           "SearchCache", "search", "plan_to_target"]



def target_goal(target: dict, unpruned: dict) -> tuple[dict, Callable[[dict], bool]]:
    """The goal as prune.json records it, and whether a probe meets it: flops is a fraction of the
    unpruned model's FLOPs, latency_ms an ONNX Runtime median, speedup the ratio to the unpruned
    model timed in the same rounds (export.latency.PairedLatency)."""
    kind, value = target_kind(target)
    if kind == "flops":
        return {"flops": value * unpruned["flops"]}, lambda p: p["flops"] <= value * unpruned["flops"]
    if kind == "speedup":
        return {"speedup": value}, lambda p: p["speedup"] >= value
    return {"latency_ms": value}, lambda p: p["latency_ms"] <= value


def candidate_thresholds(scored: Scored, *, min_channels: int, clamp: bool) -> list[float]:
    """Every distinct |γ| in ascending order: a threshold removes the channels strictly below it,
    so the first removes nothing. Without clamping, only those that leave each group min_channels."""
    values = torch.cat([s for _, _, s in scored]).unique().tolist()
    if not clamp:
        limit = feasible_threshold(scored, min_channels)
        values = [v for v in values if v <= limit]
    return values


def bisect(candidates: list[float], probe: Callable[[float], dict], meets: Callable[[dict], bool],
           on_probe: Callable[[int, dict], None] = lambda index, result: None) -> tuple[int | None, list[dict]]:
    """Index of the smallest candidate whose probe meets the goal (None: not even the largest
    does), and every probe made, in order, each also handed to `on_probe` as it is made.
    log2(len(candidates)) + 1 probes."""
    probes: list[dict] = []

    def run(i: int) -> bool:
        result = {"threshold": candidates[i], **probe(candidates[i])}
        result["meets"] = bool(meets(result))
        probes.append(result)
        on_probe(len(probes), result)
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
    kind, value = target_kind(target)
    reached = {"flops": best["flops"] / unpruned["flops"], "latency_ms": best.get("latency_ms"),
               "speedup": best.get("speedup")}[kind]
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


Timer = Callable[[nn.Module], Callable[[nn.Module], dict]]  # unpruned model -> (model -> {"latency_ms", "speedup"})


def search(model: nn.Module, example: Inputs, scored: Scored, prune_cfg: dict, unpruned: dict,
           make_timer: Timer, blocks: list[str] = ()) -> dict:
    """Probe thresholds until the smallest that meets `prune_cfg["target"]` is found; the outcome
    (threshold, goal, every probe's ratio, FLOPs and latency) as prune.json records it.

    Thresholds that leave the same widths (past the point where every group is clamped, say) are
    the same model: it is measured once, so noise cannot judge one network twice (such a probe
    records "same_model": true and probe_s 0)."""
    target = prune_cfg["target"]
    plan_args = {"min_channels": prune_cfg["min_channels"], "round_to": prune_cfg["round_to"], "blocks": blocks}
    time_model = make_timer(model) if is_timed(target) else None
    timed_at = {}  # where a timed target is measured (input size, threads, batch, precision), for prune.json
    if time_model is not None:
        timing = time_model(model)
        unpruned = {**unpruned, "latency_ms": timing["latency_ms"]}
        timed_at = {"geometry": timing["geometry"]} if "geometry" in timing else {}
    goal, meets = target_goal(target, unpruned)
    measured: dict[tuple, dict] = {}

    def probe(threshold: float) -> dict:
        plan = plan_at_threshold(model, scored, threshold, **plan_args)
        widths = (tuple(len(g.remove) for g in plan.groups), tuple(plan.dropped))
        if widths in measured:  # the same network again: its measurement, not its cost again
            return measured[widths] | ({"same_model": True, "probe_s": 0.0} if time_model else {})
        started = time.perf_counter()
        slim = prune_model(copy.deepcopy(model), example, plan)
        measured[widths] = {"ratio": round(plan.achieved_ratio, 4), "flops": count_flops(slim, example),
                            **({"blocks_dropped": len(plan.dropped)} if blocks else {}),
                            **(time_model(slim) if time_model else {})}
        if time_model:  # what a timed probe cost (export, INT8 quantization, timing): the search's price
            measured[widths]["probe_s"] = round(time.perf_counter() - started, 1)
        return measured[widths]

    candidates = candidate_thresholds(scored, min_channels=plan_args["min_channels"],
                                      clamp=prune_cfg["on_infeasible"] == "clamp")
    found, probes = bisect(candidates, probe, meets, lambda i, result: progress.info(probe_line(i, result, goal)))
    if found is None:
        raise UserError(infeasible_message(target, probes[0], unpruned, prune_cfg))
    return {"target": target, "goal": goal, "unpruned": unpruned, "threshold": candidates[found],
            "probes": probes, "models_measured": len(measured), **timed_at}


def plan_to_target(model: nn.Module, example: Inputs, scored: Scored, prune_cfg: dict, unpruned: dict,
                   cache: SearchCache, make_timer: Timer, blocks: list[str] = ()) -> tuple[PrunePlan, dict]:
    """The plan at the threshold a search finds, or that `cache` holds from an earlier search of
    the same checkpoint and settings; and the search's record (with "reused": cache path)."""
    outcome = cache.get()
    if outcome is None:
        outcome = search(model, example, scored, prune_cfg, unpruned, make_timer, blocks)
        cache.put(outcome)
    else:
        outcome = {**outcome, "reused": str(cache.path)}
    plan = plan_at_threshold(model, scored, outcome["threshold"], min_channels=prune_cfg["min_channels"],
                             round_to=prune_cfg["round_to"], blocks=blocks)
    return plan, outcome
