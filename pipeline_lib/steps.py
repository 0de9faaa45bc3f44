"""One function per pipeline step, with plain arguments (paths and config sections).

`workflow/scripts/*.py` and `python -m pipeline_lib STEP` both call these, so a step behaves the
same under Snakemake, SLURM or by hand.

    prepare_dataset(dataset_cfg=cfg["dataset"], family="detection", seed=0, manifest_path="results/data/dataset.json")

Names: `family` is a `task:` value (a string), `task` the family's Task object, and `label` an
artifact's lineage label (`sparse`, `iter/1/sparse`, `sweep/r0.5/pruned_finetuned`).
"""
from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from . import adapters, distill
from .checkpoint import save_checkpoint
from .config import TRAINED_STAGES, config_hash
from .engine import distributed, seed_everything, select_device, train
from .engine.utils import peak_memory_mb, to_device
from .export.latency import PairedLatency
from .errors import UserError
from .io import atomic_path, read_json, sha256_file, write_json, write_text
from .profile import count_flops, count_params
from .provenance import provenance_markdown, write_provenance
from .report import (landing_page, plot_gamma, plot_latency, plot_training_curves, primary_metric, summary_table,
                     validation_metric, write_summary, write_sweep)
from .report_plots import write_plots
from .runner import setup_logging
from .slimming import L1Sparsity, plan_prune, prunable_bns, prune_model, score_groups
from .slimming.target import SearchCache, plan_to_target
from .tasks import Criterion, Task, get_task, load_model, with_evaluator
from .weights import import_weights

__all__ = ["prepare_dataset", "StageSpec", "train_stage", "merge_lora", "prune_stage", "evaluate_stage", "report", "sweep_report"]

log = logging.getLogger("slimflow")

_NO_MANIFEST = "run prepare-dataset first (snakemake does it; by hand: python -m pipeline_lib prepare-dataset)"


def prepare_dataset(*, dataset_cfg: dict, family: str, seed: int, manifest_path: str | os.PathLike) -> dict:
    """Generate (embedded default) or index a real dataset, validate it once, write the manifest."""
    manifest_path = Path(manifest_path)
    manifest = get_task(family).prepare_dataset(dataset_cfg, manifest_path.parent, seed)
    write_json(manifest_path, manifest)
    log.info("dataset: %s; names: %s", manifest["counts"], manifest["names"])
    return manifest


def _write_csv(path: str | os.PathLike, rows: list[dict]) -> None:
    with atomic_path(path) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)


@dataclass(frozen=True)
class StageSpec:
    """Everything one training stage needs: what `train_stage` hands to each (DDP) process."""

    label: str  # lineage label: logs, progress bars and the checkpoint's meta["stage"]
    train_cfg: dict  # `train` with the stage's `stages.<section>` laid over it
    model_cfg: dict
    family: str
    validation: dict  # the `evaluate` settings per-epoch validation reads (tasks.validation_settings)
    seed: int
    device: str
    manifest_path: str | os.PathLike
    out_checkpoint: str | os.PathLike
    out_csv: str | os.PathLike
    workdir: str | os.PathLike  # resume state (last.pt, best.pt) while the stage runs
    init_checkpoint: str | os.PathLike | None = None  # the parent artifact; None builds from model_cfg
    out_adapter: str | os.PathLike | None = None  # LoRA stages: the adapter alone (default: beside out_checkpoint)
    teacher_checkpoint: str | os.PathLike | None = None  # stages.finetune.distill: the unpruned model that teaches


def _section(label: str) -> str:
    """The `stages.<section>` a lineage label trains with (iter/1/pruned_finetuned -> finetune)."""
    return TRAINED_STAGES[label.rpartition("/")[2]]


def train_stage(spec: StageSpec) -> None:
    """Train one stage with the shared engine; publish the best weights as a checkpoint.

    `init_checkpoint` starts from a parent artifact (its architecture and weights, e.g. a pruned
    model); without it the model is built from `model_cfg`. With `train.nprocs` > 1 the stage
    runs in that many DDP processes (one per GPU, or gloo on CPU); `train.batch_size` is their total.
    """
    nprocs = spec.train_cfg["nprocs"]
    if spec.train_cfg["batch_size"] % nprocs:
        raise UserError(f"train.batch_size={spec.train_cfg['batch_size']} is the total over train.nprocs={nprocs} "
                        "processes: make it a multiple of nprocs")
    distributed.launch(_train_process, nprocs=nprocs, spec=spec)


def _train_process(spec: StageSpec) -> None:
    """train_stage's body in one (DDP) process; rank 0 publishes."""
    if distributed.world_size() > 1 and distributed.is_main():
        setup_logging(sys.stderr)  # a spawned process: its stderr is the step's log
    task, train_cfg = get_task(spec.family), spec.train_cfg
    manifest = read_json(spec.manifest_path, missing=_NO_MANIFEST)
    seed_everything(spec.seed)
    if spec.init_checkpoint is not None:
        parent = load_model(spec.init_checkpoint, family=spec.family)
        _check_names(spec.init_checkpoint, parent.ckpt, spec.manifest_path, manifest,
                     "a stage continues its parent's classes (stages.finetune.dataset needs the baseline's)")
        model, arch, parent_hash = parent.model, parent.ckpt["arch"], sha256_file(spec.init_checkpoint)
        epochs_before = parent.ckpt["meta"].get("epochs_total", parent.ckpt["meta"].get("epochs", 0))
    elif spec.model_cfg.get("weights"):  # the user's own weights (docs/WEIGHTS.md): their arch, this data's classes
        imported = import_weights(task, spec.model_cfg["weights"], spec.model_cfg, manifest)
        model, arch, parent_hash = imported.model, imported.arch, sha256_file(spec.model_cfg["weights"])
    else:
        arch = task.arch(spec.model_cfg, manifest)
        model, parent_hash = task.build_model(arch), None
    if spec.init_checkpoint is None:  # built here, or imported: epochs spent before the import are not known
        epochs_before = 0
    imgsz, dev = spec.model_cfg["imgsz"], distributed.device_for_rank(select_device(spec.device))
    loader_args = dict(imgsz=imgsz, batch_size=train_cfg["batch_size"] // distributed.world_size(),
                       workers=train_cfg["workers"], seed=spec.seed)
    train_loader = task.loader(manifest, "train", train=True, augment=train_cfg["augment"], **loader_args)
    val_loader = task.loader(manifest, "val", train=False, **loader_args)
    hooks, fixed = [], task.keep_width_modules(model)
    if train_cfg.get("sr", 0) > 0:  # the sparse stage: L1 on every prunable BN scale
        bns = prunable_bns(model, task.example_input(imgsz), fixed)
        hooks.append(L1Sparsity(bns, train_cfg["sr"], train_cfg["sr_decay"]))
    params, lora = count_params(model), train_cfg.get("lora")
    layers = _inject_lora(spec, model, lora, fixed, hooks) if lora else []
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if lora:
        log.info("%s: LoRA r=%d on %d layers; training %d of %d parameters (%.1f%%)", spec.label, lora["r"],
                 len(layers), trainable, params, 100 * trainable / params)
    criterion, teacher = task.criterion(model, train_cfg), None
    if train_cfg.get("distill"):
        criterion, teacher = _distillation(spec, task, criterion, manifest, dev)
    data_hash = config_hash(manifest["checksums"])
    run_hash = config_hash({"stage": spec.label, "train": train_cfg, "validation": spec.validation, "arch": arch, "imgsz": imgsz,
                            "parent": parent_hash, "data": data_hash, "seed": spec.seed,
                            **({"teacher": teacher["teacher_sha256"]} if teacher else {})})
    workdir = Path(spec.workdir)
    result = train(model, criterion=criterion, train_loader=train_loader,
                   evaluate=lambda m: task.evaluate(m, val_loader, dev, spec.validation, manifest),
                   fitness=task.fitness, cfg=train_cfg, workdir=workdir, device=dev,
                   run_id=run_hash, hooks=hooks, desc=spec.label)
    if result is None:  # not rank 0
        return
    model.load_state_dict(result.state_dict)
    meta = {"stage": spec.label, "epoch": result.epoch, "epochs": train_cfg["epochs"],
            "epochs_total": epochs_before + train_cfg["epochs"], "metrics": result.metrics,
            "fitness": result.fitness, "imgsz": imgsz, "names": manifest["names"], "seed": spec.seed,
            "config": train_cfg, "config_hash": config_hash(train_cfg), "run_hash": run_hash,
            "parent": parent_hash, "parent_path": None if spec.init_checkpoint is None else str(spec.init_checkpoint),
            "dataset": data_hash,
            "training": {"params": params, "trainable_params": trainable, "peak_mem_mb": round(peak_memory_mb(dev), 1),
                         "seconds_per_epoch": round(sum(r["time_s"] for r in result.history) / len(result.history), 2)}}
    if teacher:
        meta["distill"] = teacher
    if lora:
        _publish_adapter(spec, model.cpu(), lora, layers, meta)
    _write_csv(spec.out_csv, result.history)
    save_checkpoint(spec.out_checkpoint, model.cpu(), arch, meta)
    for name in ("last.pt", "best.pt"):  # published: an interrupted rerun must not resume a finished run
        (workdir / name).unlink(missing_ok=True)
    log.info("%s: best epoch %d, fitness %.4f, %s -> %s", spec.label, result.epoch, result.fitness, result.metrics,
             spec.out_checkpoint)


def _inject_lora(spec: StageSpec, model: nn.Module, lora: dict, fixed: list[nn.Module], hooks: list) -> list[str]:
    """Wrap the stage's target layers in adapters and freeze the rest (norms stay in eval mode
    unless `train_bn`); returns the wrapped layers' names."""
    if spec.init_checkpoint is None:
        raise UserError(f"{spec.label}: lora adapts trained weights, but this stage builds its model from scratch")
    layers = adapters.inject_from_config(model, lora, fixed, key=f"stages.{_section(spec.label)}.lora")
    hooks += [] if lora["train_bn"] else [adapters.FrozenNorms()]
    return layers


def _distillation(spec: StageSpec, task: Task, criterion: Criterion, manifest: dict,
                  device: torch.device) -> tuple[distill.Distillation, dict]:
    """The stage's criterion with the teacher's term (`stages.finetune.distill`), and what the
    checkpoint's meta records of the teacher: another teacher makes another artifact."""
    cfg = spec.train_cfg["distill"]
    if spec.teacher_checkpoint is None:
        raise UserError(f"{spec.label}: stages.finetune.distill is set, but no teacher checkpoint was given "
                        f"(results/{cfg['teacher']}.pt)")
    loaded = distill.load_teacher(spec.teacher_checkpoint, spec.family, device)
    _check_names(spec.teacher_checkpoint, loaded.ckpt, spec.manifest_path, manifest,
                 "the teacher must know the student's classes")
    record = {**cfg, "teacher_path": str(spec.teacher_checkpoint),
              "teacher_sha256": sha256_file(spec.teacher_checkpoint), "teacher_stage": loaded.ckpt["meta"].get("stage"),
              "teacher_config_hash": loaded.ckpt["meta"].get("config_hash")}
    log.info("%s: distilling from %s (weight %g, temperature %g)", spec.label, spec.teacher_checkpoint,
             cfg["weight"], cfg["temperature"])
    return distill.Distillation(criterion, loaded.model, task, cfg), record


def _publish_adapter(spec: StageSpec, model: nn.Module, lora: dict, layers: list[str], meta: dict) -> None:
    """Write the adapter alone, then merge it: the stage publishes an ordinary checkpoint."""
    out_adapter = spec.out_adapter or adapters.adapter_path(spec.out_checkpoint)
    adapters.save_adapter(out_adapter, model, lora, layers, base=spec.init_checkpoint,
                          meta={k: meta[k] for k in ("stage", "epoch", "epochs_total", "metrics", "fitness", "run_hash",
                                                     "dataset")})
    meta["training"]["adapter_bytes"] = os.path.getsize(out_adapter)
    meta["lora"] = {"adapter": str(out_adapter), **adapters.resolved(lora), "layers": len(layers)}
    adapters.merge(model)


def merge_lora(*, base: str | os.PathLike, adapter: str | os.PathLike, out_checkpoint: str | os.PathLike) -> None:
    """Apply a LoRA adapter to the base checkpoint it was trained on and save the merged network
    (what a LoRA stage publishes; by hand, e.g. one base and one adapter per site)."""
    loaded = adapters.apply_adapter(base, adapter)
    meta = {**loaded.ckpt["meta"], **adapters.load_adapter(adapter)["meta"], "parent": sha256_file(base),
            "parent_path": str(base), "lora": {"adapter": str(adapter)}}
    save_checkpoint(out_checkpoint, loaded.model, loaded.ckpt["arch"], meta)
    log.info("merged %s into %s -> %s", adapter, base, out_checkpoint)


def _bn_widths(model: nn.Module) -> dict[str, int]:
    return {name: m.num_features for name, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}


def prune_stage(*, checkpoint: str | os.PathLike, prune_cfg: dict, out_checkpoint: str | os.PathLike,
                out_report: str | os.PathLike) -> dict:
    """Plan and cut channels of a (sparsity-trained) checkpoint; write pruned.pt and prune.json.

    The plan comes from `prune_cfg["ratio"]`, or from a search for `prune_cfg["target"]` whose
    outcome is kept in prune_search.json beside prune.json and reused by reruns (target.SearchCache).
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
        cache = SearchCache(Path(out_report).with_name("prune_search.json"), sha256_file(checkpoint), prune_cfg)
        timer = partial(PairedLatency, example=example, threads=prune_cfg.get("threads", 1),
                        runs=prune_cfg["target"].get("runs", 50))
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


def _preview(names: list) -> str:
    return str(names if len(names) <= 4 else [*names[:3], "..."])


def _check_names(checkpoint: str | os.PathLike, ckpt: dict, manifest_path: str | os.PathLike, manifest: dict,
                 remedy: str) -> None:
    """A checkpoint meets a dataset with its own label set only (one UserError line otherwise)."""
    names = ckpt["meta"].get("names")
    if names is not None and names != manifest["names"]:
        raise UserError(f"{checkpoint}: trained for {len(names)} classes {_preview(names)}, but {manifest_path} has "
                        f"{len(manifest['names'])} {_preview(manifest['names'])}; {remedy}")


def train_evaluator(*, manifest_path: str | os.PathLike, eval_cfg: dict, device: str, seed: int,
                    out_evaluator: str | os.PathLike, out_report: str | os.PathLike) -> dict:
    """Train the family's own evaluator on a dataset (`tasks.has_evaluator`); write it and its report."""
    manifest = read_json(manifest_path, missing=_NO_MANIFEST)
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
    manifest = read_json(manifest_path, missing=_NO_MANIFEST)
    loaded = load_model(checkpoint, family=manifest["task"])
    _check_names(checkpoint, loaded.ckpt, manifest_path, manifest, "retrain it on this dataset")
    task, imgsz, dev = loaded.task, loaded.imgsz, select_device(device)
    model = loaded.model.to(dev)
    loader = task.loader(manifest, "val", train=False, imgsz=imgsz, batch_size=eval_cfg["batch_size"],
                         workers=0, seed=seed)
    metrics = task.evaluate(model, loader, dev, eval_cfg, manifest, Path(out_predictions) if out_predictions else None)
    result = {"stage": label, "task": task.family, "checkpoint": str(checkpoint), "metrics": metrics,
              "fitness": task.fitness(metrics), "params": count_params(model),
              "flops": count_flops(model, to_device(task.example_input(imgsz), dev)),
              "file_bytes": os.path.getsize(checkpoint), "imgsz": imgsz, "data": str(manifest_path),
              "network_calls": task.network_calls(model, eval_cfg)}
    result["epochs_total"] = loaded.ckpt["meta"].get("epochs_total")  # every epoch that trained these weights
    if "training" in loaded.ckpt["meta"]:  # what training it cost: trainable params, memory, time, adapter size
        result["training"] = loaded.ckpt["meta"]["training"]
    write_json(out_metrics, result)
    log.info("%s: %s", label, result)
    return result


def report(*, metrics_paths: list[str | os.PathLike], latency_paths: list[str | os.PathLike],
           checkpoints: list[str | os.PathLike], gamma_checkpoints: dict[str, str | os.PathLike],
           curves: dict[str, str | os.PathLike], out_csv: str | os.PathLike, out_md: str | os.PathLike,
           out_provenance: str | os.PathLike, out_gamma_png: str | os.PathLike,
           out_curves_png: str | os.PathLike, out_latency_png: str | os.PathLike,
           prune_report: str | os.PathLike | None = None, out_page: str | os.PathLike | None = None,
           **extra) -> None:
    """summary.csv / summary.md (one row per artifact), provenance.json, the plots and the HTML
    report's first page (`out_page`, reStructuredText, with prune.json's requested and achieved ratio).
    `extra`: the plots of `report_plots.write_plots` (channels, Pareto, family figures, samples)."""
    table = summary_table(metrics_paths, latency_paths)
    metric, prune = primary_metric(metrics_paths[0]), read_json(prune_report) if prune_report else None
    record = write_provenance(checkpoints, out_provenance)
    write_summary(table, out_csv, out_md, sections={"Provenance": provenance_markdown(record)}, metric=metric,
                  prune_report=prune)
    if out_page is not None:
        write_text(out_page, landing_page(table, metric, prune))
    plot_gamma(gamma_checkpoints, out_gamma_png, threshold=prune["threshold"] if prune else None)
    curve_metric = validation_metric(curves, metric)
    pruned = table.loc[table["stage"] == "pruned", curve_metric] if curve_metric in table else []
    plot_training_curves(curves, curve_metric, out_curves_png, pruned=float(pruned.iloc[0]) if len(pruned) else None)
    plot_latency(table, out_latency_png)
    write_plots(table, metric, prune, **extra)
    log.info("summary:\n%s", table.to_string(index=False))


def sweep_report(*, baseline_metrics: str | os.PathLike, pruned_metrics: list[str | os.PathLike],
                 finetuned_metrics: list[str | os.PathLike], out_csv: str | os.PathLike,
                 out_png: str | os.PathLike) -> None:
    """results/sweep/summary.csv and the accuracy-against-FLOPs plot of a prune-ratio sweep."""
    table = write_sweep(baseline_metrics, pruned_metrics, finetuned_metrics, out_csv, out_png)
    log.info("sweep:\n%s", table.to_string(index=False))
