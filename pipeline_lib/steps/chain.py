"""The chain's steps around training: pruning, evaluation, the family's evaluator (the dataset:
`steps.dataset`).

    evaluate_stage(**jobs.step_args("evaluate", Artifact("", "pruned"), cfg))
"""
from __future__ import annotations

import copy
import logging
import os
from functools import partial
from pathlib import Path

from torch import nn

from ..checkpoint import save_checkpoint
from ..config import config_hash
from ..engine.utils import seed_everything, select_device, to_device
from ..io import read_json, sha256_file, write_json
from ..profile import count_flops, count_params
from ..slimming import plan_prune, prune_model, score_groups
from ..slimming.target import SearchCache, plan_to_target
from ..tasks import get_task, load_model, with_evaluator
from .records import NO_MANIFEST, check_names, metrics_record

__all__ = ["prune_stage", "train_evaluator", "evaluate_stage"]

log = logging.getLogger("slimflow")


def _bn_widths(model: nn.Module) -> dict[str, int]:
    return {name: m.num_features for name, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}


def _target_timer(loaded, prune_cfg: dict, manifest_path: str | os.PathLike | None = None) -> partial:
    """PairedLatency at the timed target's geometry (export.geometry.target_geometry): candidates are
    exported with the input size they are timed at, or with `prune.target.int8` quantized as the
    quantize step would (calibrated on `manifest_path`'s training images) and timed as INT8; with
    "finetune_act" (stages.finetune.act) each candidate gets that activation first, as its finetune
    will, while the reference stays the unpruned model as trained."""
    # imported here: only a timed target exports and times candidates (torch.onnx, onnx, ONNX Runtime)
    from ..export.geometry import target_geometry
    from ..export.latency import PairedLatency
    from .export import int8_probe_export

    task = loaded.task
    geometry = target_geometry(prune_cfg["target"], prune_cfg.get("deploy_imgsz"), trained=loaded.imgsz,
                               extra_sizes=task.deploy_sizes, dynamic=task.dynamic_input,
                               threads=prune_cfg.get("threads", 1))
    int8 = int8_probe_export(loaded, manifest_path, prune_cfg["int8_quantize"]) if geometry["precision"] == "int8" else None
    act = prune_cfg.get("finetune_act")  # a family schema allows it only where its model has set_activation
    deployed = (lambda candidate: copy.deepcopy(candidate).set_activation(act)) if act else None
    return partial(PairedLatency, example=task.example_input(geometry["imgsz"]), threads=geometry["threads"],
                   runs=prune_cfg["target"].get("runs", 50), geometry=geometry, candidate_export=int8,
                   candidate_transform=deployed)


def prune_stage(*, checkpoint: str | os.PathLike, prune_cfg: dict, out_checkpoint: str | os.PathLike,
                out_report: str | os.PathLike, search_cache: str | os.PathLike | None = None,
                manifest_path: str | os.PathLike | None = None) -> dict:
    """Plan and cut channels of a (sparsity-trained) checkpoint; write pruned.pt and prune.json.

    The plan comes from `prune_cfg["ratio"]`, or from a search for `prune_cfg["target"]` whose
    outcome is kept in `search_cache` (default: prune_search.json beside prune.json) and reused by
    reruns (target.SearchCache). `manifest_path`: the calibration data of a target that counts INT8.
    """
    loaded = load_model(checkpoint)
    ckpt, model = loaded.ckpt, loaded.model
    example = loaded.task.example_input(loaded.imgsz)
    keep = loaded.task.keep_width_modules(model)
    layers = _bn_widths(model)
    before = {"params": count_params(model), "flops": count_flops(model, example)}
    guards = {k: prune_cfg[k] for k in ("min_channels", "round_to")}
    blocks = loaded.task.residual_blocks(model) if prune_cfg.get("drop_blocks") else []
    search = None
    if prune_cfg.get("target"):
        cache = SearchCache(Path(search_cache or Path(out_report).with_name("prune_search.json")),
                            sha256_file(checkpoint), prune_cfg)
        timer = _target_timer(loaded, prune_cfg, manifest_path)
        plan, search = plan_to_target(model, example, score_groups(model, example, keep), prune_cfg, before, cache,
                                      timer, blocks)
    else:
        plan = plan_prune(model, example, prune_cfg["ratio"], keep=keep, on_infeasible=prune_cfg["on_infeasible"],
                          blocks=blocks, **guards)
    prune_model(model, example, plan)
    after = {"params": count_params(model), "flops": count_flops(model, example)}
    pruned = _bn_widths(model)
    report = {"checkpoint": str(checkpoint), "config": prune_cfg, "threshold": plan.threshold,
              "ratio_requested": plan.ratio, "ratio_achieved": plan.achieved_ratio, "before": before, "after": after,
              "layers": {name: {"before": n, "after": pruned.get(name, 0)} for name, n in layers.items()},
              "clamped": plan.clamped_report(), "dropped_blocks": plan.dropped, **({"search": search} if search else {})}
    inherited = {k: ckpt["meta"].get(k) for k in ("imgsz", "names", "seed", "dataset", "epochs_total")}
    meta = {**inherited, "stage": "pruned", "parent": sha256_file(checkpoint), "parent_path": str(checkpoint),
            "config": prune_cfg,
            "config_hash": config_hash(prune_cfg),
            "prune": {k: report[k] for k in ("threshold", "ratio_requested", "ratio_achieved")}}
    arch = {**ckpt["arch"], "dropped": ckpt["arch"].get("dropped", []) + plan.dropped} if plan.dropped else ckpt["arch"]
    save_checkpoint(out_checkpoint, model, arch, meta)
    write_json(out_report, report)
    log.info("pruned %.1f%% of prunable channels: FLOPs %d -> %d, params %d -> %d", 100 * plan.achieved_ratio,
             before["flops"], after["flops"], before["params"], after["params"])
    return report


def train_evaluator(*, manifest_path: str | os.PathLike, eval_cfg: dict, device: str, seed: int,
                    out_evaluator: str | os.PathLike, out_report: str | os.PathLike) -> dict:
    """Train the family's own evaluator on a dataset (`tasks.has_evaluator`); write it and its report."""
    manifest = read_json(manifest_path, missing=NO_MANIFEST)
    seed_everything(seed)
    info = get_task(manifest["task"]).train_evaluator(manifest, eval_cfg, select_device(device), seed,
                                                      Path(out_evaluator))
    report = {"evaluator": str(out_evaluator), "data": str(manifest_path), **info}
    write_json(out_report, report)
    log.info("evaluator for %s: %s", manifest_path, info)
    return report


def evaluate_stage(*, label: str, checkpoint: str | os.PathLike, manifest_path: str | os.PathLike,
                   eval_cfg: dict, device: str, seed: int, out_metrics: str | os.PathLike,
                   out_predictions: str | os.PathLike | None = None, evaluator: str | os.PathLike | None = None) -> dict:
    """Evaluate a checkpoint on the val split; write metrics, params, FLOPs and file size."""
    eval_cfg = with_evaluator(eval_cfg, evaluator)
    manifest = read_json(manifest_path, missing=NO_MANIFEST)
    loaded = load_model(checkpoint, family=manifest["task"])
    check_names(checkpoint, loaded.ckpt, manifest_path, manifest, "retrain it on this dataset")
    task, imgsz, dev = loaded.task, loaded.imgsz, select_device(device)
    model = loaded.model.to(dev)
    loader = task.loader(manifest, "val", train=False, imgsz=imgsz, batch_size=eval_cfg["batch_size"],
                         workers=0, seed=seed)
    metrics = task.evaluate(model, loader, dev, eval_cfg, manifest, Path(out_predictions) if out_predictions else None)
    result = metrics_record(stage=label, task=task, path=checkpoint, metrics=metrics, params=count_params(model),
                            flops=count_flops(model, to_device(task.example_input(imgsz), dev)), imgsz=imgsz,
                            manifest_path=manifest_path, network_calls=task.network_calls(model, eval_cfg),
                            epochs_total=loaded.ckpt["meta"].get("epochs_total"))  # every epoch that trained it
    if "training" in loaded.ckpt["meta"]:  # what training it cost: trainable params, memory, time, adapter size
        result["training"] = loaded.ckpt["meta"]["training"]
    write_json(out_metrics, result)
    log.info("%s: %s", label, result)
    return result


