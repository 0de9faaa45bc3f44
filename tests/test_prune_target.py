"""prune.target: the threshold search meets FLOPs, latency and speedup targets (FP32 or INT8), records
its probes, fails in one line when the guards make a target unreachable, and is reused from its cache."""
from __future__ import annotations

import copy
import json
from functools import partial

import onnx
import pytest
import torch

from pipeline_lib.config import load_config
from pipeline_lib.errors import UserError
from pipeline_lib.export.settings import rule_settings
from pipeline_lib.profile import count_flops
from pipeline_lib.progress import probe_line
from pipeline_lib.slimming import plan_at_threshold, prune_model, score_groups
from pipeline_lib.slimming.target import SearchCache, bisect, candidate_thresholds, plan_to_target
from pipeline_lib.export.latency import PairedLatency
from pipeline_lib.steps.chain import _target_timer
from pipeline_lib.tasks import load_model
from pipeline_lib.tasks.detection.model import YOLODetector

from conftest import REPO, progress_records, randomize_bn

GUARDS = {"min_channels": 4, "round_to": 8, "on_infeasible": "clamp"}


def _model(levels: int | None = None):
    """A detector with distinct |γ|, or only `levels` distinct values (fewer probes: each timed
    probe is a torch.export of seconds)."""
    torch.manual_seed(0)
    model = randomize_bn(YOLODetector(3, "n"))
    if levels:
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.weight.copy_((m.weight * levels).ceil() / levels)
    return model, torch.rand(1, 3, 64, 64)


def _flops_at(model, example, scored, threshold):
    plan = plan_at_threshold(model, scored, threshold, min_channels=GUARDS["min_channels"], round_to=GUARDS["round_to"])
    return count_flops(prune_model(copy.deepcopy(model), example, plan), example)


def _search(model, example, tmp_path, target, **settings):
    cfg = {**GUARDS, **settings, "target": target}
    scored = score_groups(model, example, model.keep_width_modules())
    cache = SearchCache(tmp_path / "prune_search.json", "parent-sha", cfg)
    unpruned = {"flops": count_flops(model, example)}
    timer = lambda reference: PairedLatency(reference, example, threads=1, runs=target.get("runs", 50))  # noqa: E731
    return scored, unpruned, plan_to_target(model, example, scored, cfg, unpruned, cache, timer)


def test_flops_target_is_met_by_the_smallest_threshold_within_one_rounding_step(tmp_path):
    model, example = _model()
    with progress_records() as records:
        scored, unpruned, (plan, search) = _search(model, example, tmp_path, {"flops": 0.5})
    goal = 0.5 * unpruned["flops"]
    assert search["goal"] == {"flops": goal}
    flops = count_flops(prune_model(copy.deepcopy(model), example, plan), example)
    assert flops <= goal
    # One candidate lower (fewer channels removed: one rounding step in some layer) misses it.
    candidates = candidate_thresholds(scored, min_channels=4, clamp=True)
    below = candidates[candidates.index(search["threshold"]) - 1]
    assert _flops_at(model, example, scored, below) > goal
    # Bisection: about log2(candidates) probes, each recording its ratio and FLOPs; the chosen one among them.
    assert len(search["probes"]) <= len(candidates).bit_length() + 1
    chosen = [p for p in search["probes"] if p["threshold"] == search["threshold"]]
    assert chosen and chosen[0]["meets"] and chosen[0]["flops"] == flops
    assert all(p["meets"] == (p["flops"] <= goal) and 0 <= p["ratio"] < 1 for p in search["probes"])
    # One progress line per probe as it is made: its threshold, ratio, FLOPs, and met or not.
    lines = [r.getMessage() for r in records]
    assert lines == [f"prune target probe {i}: |γ| threshold {p['threshold']:.6g}, ratio {p['ratio']:.3f}, "
                     f"FLOPs {p['flops']:.4g}: {'meets' if p['meets'] else 'misses'} flops <= {goal:.4g}"
                     for i, p in enumerate(search["probes"], 1)]


def test_an_unreachable_target_fails_naming_the_best_reachable_value(tmp_path):
    model, example = _model()
    with pytest.raises(UserError, match=r"prune\.target: flops 0\.001 is not reachable: .* reaches flops 0\.\d+") as info:
        _search(model, example, tmp_path, {"flops": 0.001})
    best = float(str(info.value).split("reaches flops ")[1].split()[0])
    assert 0.001 < best < 1
    assert not (tmp_path / "prune_search.json").exists()  # nothing recorded for a failed search


@pytest.mark.e2e  # slow for a unit test: every timed probe is a real torch.export (seconds)
def test_latency_target_records_every_probe_and_a_rerun_reuses_the_outcome(tmp_path):
    model, example = _model(levels=4)
    _, unpruned, (plan, search) = _search(model, example, tmp_path, {"speedup": 1.3, "runs": 10})
    assert search["unpruned"]["latency_ms"] > 0 and search["goal"] == {"speedup": 1.3}
    probes = search["probes"]
    assert probes and all(p["latency_ms"] > 0 and p["speedup"] > 0 and p["flops"] > 0 for p in probes)
    # each probe's cost is recorded where it was paid: a probe of an already measured model costs nothing
    assert all((p["probe_s"] > 0) != p.get("same_model", False) for p in probes)
    assert all(p["meets"] == (p["speedup"] >= 1.3) for p in probes)
    # thresholds that leave the same widths are one model, timed once: equal FLOPs, equal timings
    for a in probes:
        for b in probes:
            if a["flops"] == b["flops"] and a["ratio"] == b["ratio"]:
                assert a["latency_ms"] == b["latency_ms"]
    assert search["models_measured"] <= len(probes)
    # the chosen threshold's probe met the goal as measured then
    assert next(p for p in search["probes"] if p["threshold"] == search["threshold"])["meets"]
    cached = json.loads((tmp_path / "prune_search.json").read_text())
    assert [entry["threshold"] for entry in cached.values()] == [search["threshold"]]

    # A rerun of the same checkpoint and settings takes the recorded threshold: no probe is timed.
    timer_calls = []
    scored = score_groups(model, example, model.keep_width_modules())
    cfg = {**GUARDS, "target": {"speedup": 1.3, "runs": 10}}
    again, record = plan_to_target(model, example, scored, cfg, unpruned,
                                   SearchCache(tmp_path / "prune_search.json", "parent-sha", cfg),
                                   lambda reference: timer_calls.append(reference))
    assert not timer_calls and record["reused"].endswith("prune_search.json")
    assert [g.remove for g in again.groups] == [g.remove for g in plan.groups]
    # Another checkpoint (or settings) is another entry: it searches.
    other = SearchCache(tmp_path / "prune_search.json", "another-sha", cfg)
    assert other.get() is None


def test_bisect_finds_the_first_candidate_that_meets_a_monotone_goal():
    values = list(range(100))
    for goal in (0, 1, 37, 99):
        index, probes = bisect(values, lambda v: {"v": v}, lambda p: p["v"] >= goal)
        assert index == goal and len(probes) <= 8
    index, probes = bisect(values, lambda v: {"v": v}, lambda p: False)
    assert index is None and len(probes) == 1  # the largest candidate is tried first


@pytest.mark.e2e  # the tiny run's checkpoint and data; a real export and INT8 quantization (seconds each)
def test_an_int8_target_times_the_candidate_quantized_and_as_finetuned_against_the_unpruned_fp32(tiny_run, monkeypatch):
    monkeypatch.chdir(tiny_run)  # the manifest names its images relative to the run, as the prune step runs
    loaded = load_model("results/sparse.pt")
    quantize = {**rule_settings(load_config(REPO / "config/test.yaml")["export"], "quantize_int8"), "calibration_images": 4}
    cfg = {"target": {"speedup": 1.5, "int8": True, "imgsz": 32, "runs": 10}, "threads": 1, "deploy_imgsz": None,
           "int8_quantize": quantize, "finetune_act": "relu"}
    timer = _target_timer(loaded, cfg, "results/data/dataset.json")
    built = []  # the op types of every model timed as a candidate

    def recording(candidate, folder):
        path = timer.keywords["candidate_export"](candidate, folder)
        built.append({node.op_type for node in onnx.load(path).graph.node})
        return path

    timed = partial(timer, candidate_export=recording)(loaded.model)(loaded.model)  # what search() does per probe
    assert timed["geometry"] == {"imgsz": 32, "threads": 1, "batch": 1, "precision": "int8"}
    assert timed["latency_ms"] > 0 and timed["speedup"] > 0
    # the candidate was quantized (QDQ) as quantize_int8 does; the reference, the unpruned FP32, was not
    assert len(built) == 1 and {"QuantizeLinear", "DequantizeLinear"} <= built[0]
    # the tiny model trains with SiLU, which this INT8 keeps float as ORT's QuickGelu (export.int8_silu:
    # float, 57 of them in a yolov5n); stages.finetune.act relu deploys it with ReLU, so the candidate
    # is timed with ReLU, while the model it was cut from keeps its SiLU
    assert "QuickGelu" not in built[0] and any(isinstance(m, torch.nn.SiLU) for m in loaded.model.modules())
    probe = {"threshold": 0.5, "ratio": 0.0, "flops": 1e6, **timed, "probe_s": 3.0, "meets": True}
    assert probe_line(1, probe, {"speedup": 1.5}).endswith(
        "timed as INT8 against the unpruned FP32, in 3.0 s: meets speedup >= 1.5")
