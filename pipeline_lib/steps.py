"""One function per pipeline step, with plain arguments (paths and config sections).

`workflow/scripts/*.py` and `python -m pipeline_lib STEP` both call these, so a step behaves the
same under Snakemake, SLURM or by hand.

    prepare_dataset(dataset_cfg=cfg["dataset"], task="detection", seed=0, manifest_path="results/data/dataset.json")
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import pandas as pd
from torch import nn

from .checkpoint import build_from_checkpoint, load_checkpoint, save_checkpoint
from .config import config_hash, defaults
from .engine import distributed, seed_everything, select_device, train
from .errors import UserError
from .io import atomic_path, read_json, sha256_file, write_json
from .profile import count_flops, count_params
from .provenance import provenance_markdown, write_provenance
from .report import (plot_gamma, plot_latency, plot_training_curves, primary_metric, summary_table, write_summary,
                     write_sweep)
from .runner import setup_logging
from .slimming import L1Sparsity, plan_prune, prunable_bns, prune_model
from .tasks import get_task

__all__ = ["prepare_dataset", "train_stage", "prune_stage", "evaluate_stage", "report", "sweep_report"]

log = logging.getLogger("slimflow")


def prepare_dataset(*, dataset_cfg: dict, task: str, seed: int, manifest_path: str | os.PathLike) -> dict:
    """Generate (embedded default) or index a real dataset, validate it once, write the manifest."""
    manifest_path = Path(manifest_path)
    manifest = get_task(task).prepare_dataset(dataset_cfg, manifest_path.parent, seed)
    write_json(manifest_path, manifest)
    log.info("dataset: %s; classes: %s", manifest["counts"], manifest["names"])
    return manifest


def _write_csv(path: str | os.PathLike, rows: list[dict]) -> None:
    with atomic_path(path) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)


def train_stage(*, stage: str, train_cfg: dict, model_cfg: dict, task: str, seed: int, device: str,
                manifest_path: str | os.PathLike, out_checkpoint: str | os.PathLike,
                out_csv: str | os.PathLike, workdir: str | os.PathLike,
                init_checkpoint: str | os.PathLike | None = None) -> None:
    """Train one stage with the shared engine; publish the best weights as a checkpoint.

    `init_checkpoint` starts from a parent artifact (its architecture and weights, e.g. a pruned
    model); without it the model is built from `model_cfg`. With `train.nprocs` > 1 the stage runs
    in that many DDP processes (one per GPU, or gloo on CPU); `train.batch_size` is their total.
    """
    nprocs = train_cfg["nprocs"]
    if train_cfg["batch_size"] % nprocs:
        raise UserError(f"train.batch_size={train_cfg['batch_size']} is the total over train.nprocs={nprocs} "
                        "processes: make it a multiple of nprocs")
    distributed.launch(_train_process, nprocs=nprocs, stage=stage, train_cfg=train_cfg, model_cfg=model_cfg,
                       task=task, seed=seed, device=device, manifest_path=manifest_path,
                       out_checkpoint=out_checkpoint, out_csv=out_csv, workdir=workdir,
                       init_checkpoint=init_checkpoint)


def _train_process(*, stage, train_cfg, model_cfg, task, seed, device, manifest_path, out_checkpoint, out_csv,
                   workdir, init_checkpoint) -> None:
    """train_stage's body in one (DDP) process; rank 0 publishes."""
    if distributed.world_size() > 1 and distributed.is_main():
        setup_logging(sys.stderr)  # a spawned process: its stderr is the step's log
    family = get_task(task)
    manifest = read_json(manifest_path)
    seed_everything(seed)
    if init_checkpoint is not None:
        parent = load_checkpoint(init_checkpoint, family=task)
        model, arch, parent_hash = build_from_checkpoint(parent), parent["arch"], sha256_file(init_checkpoint)
    else:
        arch = family.arch(model_cfg, manifest)
        model, parent_hash = family.build_model(arch), None
    imgsz, dev = model_cfg["imgsz"], distributed.device_for_rank(select_device(device))
    loader_args = dict(imgsz=imgsz, batch_size=train_cfg["batch_size"] // distributed.world_size(),
                       workers=train_cfg["workers"], seed=seed)
    train_loader = family.loader(manifest, "train", train=True, augment=train_cfg["augment"], **loader_args)
    val_loader = family.loader(manifest, "val", train=False, **loader_args)
    val_cfg = defaults()["evaluate"]  # fixed, so editing `evaluate:` never retrains
    hooks = []
    if train_cfg.get("sr", 0) > 0:  # the sparse stage: L1 on every prunable BN scale
        bns = prunable_bns(model, family.example_input(imgsz), family.keep_width_modules(model))
        hooks.append(L1Sparsity(bns, train_cfg["sr"], train_cfg["sr_decay"]))
    data_hash = config_hash(manifest["checksums"])
    run_hash = config_hash({"stage": stage, "train": train_cfg, "arch": arch, "imgsz": imgsz,
                            "parent": parent_hash, "data": data_hash, "seed": seed})
    result = train(model, criterion=family.criterion(model, train_cfg), train_loader=train_loader,
                   evaluate=lambda m: family.evaluate(m, val_loader, dev, val_cfg, manifest),
                   fitness=family.fitness, cfg=train_cfg, workdir=Path(workdir), device=dev,
                   run_id=run_hash, hooks=hooks, desc=stage)
    if result is None:  # not rank 0
        return
    model.load_state_dict(result.state_dict)
    meta = {"stage": stage, "epoch": result.epoch, "epochs": train_cfg["epochs"], "metrics": result.metrics,
            "fitness": result.fitness, "imgsz": imgsz, "names": manifest["names"], "seed": seed,
            "config": train_cfg, "config_hash": config_hash(train_cfg), "run_hash": run_hash,
            "parent": parent_hash, "dataset": data_hash}
    _write_csv(out_csv, result.history)
    save_checkpoint(out_checkpoint, model.cpu(), arch, meta)
    for name in ("last.pt", "best.pt"):  # published: an interrupted rerun must not resume a finished run
        (Path(workdir) / name).unlink(missing_ok=True)
    log.info("%s: best epoch %d, fitness %.4f, %s -> %s", stage, result.epoch, result.fitness, result.metrics, out_checkpoint)


def _bn_widths(model: nn.Module) -> dict[str, int]:
    return {name: m.num_features for name, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}


def prune_stage(*, checkpoint: str | os.PathLike, prune_cfg: dict, out_checkpoint: str | os.PathLike,
                out_report: str | os.PathLike) -> dict:
    """Plan and cut channels of a (sparsity-trained) checkpoint; write pruned.pt and prune.json."""
    ckpt = load_checkpoint(checkpoint)
    family = get_task(ckpt["arch"]["family"])
    model = build_from_checkpoint(ckpt).eval()
    example = family.example_input(ckpt["meta"]["imgsz"])
    layers = _bn_widths(model)
    before = {"params": count_params(model), "flops": count_flops(model, example)}
    plan = plan_prune(model, example, prune_cfg["ratio"], min_channels=prune_cfg["min_channels"],
                      round_to=prune_cfg["round_to"], keep=family.keep_width_modules(model),
                      on_infeasible=prune_cfg["on_infeasible"])
    prune_model(model, example, plan)
    after = {"params": count_params(model), "flops": count_flops(model, example)}
    pruned = _bn_widths(model)
    report = {"checkpoint": str(checkpoint), "config": prune_cfg, "threshold": plan.threshold,
              "ratio_requested": plan.ratio, "ratio_achieved": plan.achieved_ratio, "before": before, "after": after,
              "layers": {name: {"before": n, "after": pruned[name]} for name, n in layers.items()}}
    inherited = {k: ckpt["meta"][k] for k in ("imgsz", "names", "seed", "dataset")}
    meta = {**inherited, "stage": "pruned", "parent": sha256_file(checkpoint), "config": prune_cfg,
            "config_hash": config_hash(prune_cfg),
            "prune": {k: report[k] for k in ("threshold", "ratio_requested", "ratio_achieved")}}
    save_checkpoint(out_checkpoint, model, ckpt["arch"], meta)
    write_json(out_report, report)
    log.info("pruned %.1f%% of prunable channels: FLOPs %d -> %d, params %d -> %d", 100 * plan.achieved_ratio,
             before["flops"], after["flops"], before["params"], after["params"])
    return report


def evaluate_stage(*, stage: str, checkpoint: str | os.PathLike, manifest_path: str | os.PathLike,
                   eval_cfg: dict, device: str, seed: int, out_metrics: str | os.PathLike,
                   out_predictions: str | os.PathLike | None = None) -> dict:
    """Evaluate a checkpoint on the val split; write metrics, params, FLOPs and file size."""
    manifest = read_json(manifest_path)
    family = get_task(manifest["task"])
    ckpt = load_checkpoint(checkpoint, family=manifest["task"])
    dev = select_device(device)
    model = build_from_checkpoint(ckpt).to(dev).eval()
    imgsz = ckpt["meta"]["imgsz"]
    loader = family.loader(manifest, "val", train=False, imgsz=imgsz, batch_size=eval_cfg["batch_size"],
                           workers=0, seed=seed)
    metrics = family.evaluate(model, loader, dev, eval_cfg, manifest,
                              Path(out_predictions) if out_predictions else None)
    result = {"stage": stage, "task": family.family, "checkpoint": str(checkpoint), "metrics": metrics,
              "fitness": family.fitness(metrics), "params": count_params(model),
              "flops": count_flops(model, family.example_input(imgsz).to(dev)),
              "file_bytes": os.path.getsize(checkpoint), "imgsz": imgsz}
    write_json(out_metrics, result)
    log.info("%s: %s", stage, result)
    return result


def report(*, metrics_paths: list[str | os.PathLike], latency_paths: list[str | os.PathLike],
           checkpoints: list[str | os.PathLike], gamma_checkpoints: dict[str, str | os.PathLike],
           curves: dict[str, str | os.PathLike], out_csv: str | os.PathLike, out_md: str | os.PathLike,
           out_provenance: str | os.PathLike, out_gamma_png: str | os.PathLike,
           out_curves_png: str | os.PathLike, out_latency_png: str | os.PathLike) -> None:
    """summary.csv / summary.md (one row per artifact), provenance.json and the plots."""
    table = summary_table(metrics_paths, latency_paths)
    record = write_provenance(checkpoints, out_provenance)
    write_summary(table, out_csv, out_md, sections={"Provenance": provenance_markdown(record)})
    plot_gamma(gamma_checkpoints, out_gamma_png)
    plot_training_curves(curves, primary_metric(metrics_paths[0]), out_curves_png)
    plot_latency(table, out_latency_png)
    log.info("summary:\n%s", table.to_string(index=False))


def sweep_report(*, baseline_metrics: str | os.PathLike, pruned_metrics: list[str | os.PathLike],
                 finetuned_metrics: list[str | os.PathLike], out_csv: str | os.PathLike,
                 out_png: str | os.PathLike) -> None:
    """results/sweep/summary.csv and the accuracy-against-FLOPs plot of a prune-ratio sweep."""
    table = write_sweep(baseline_metrics, pruned_metrics, finetuned_metrics, out_csv, out_png)
    log.info("sweep:\n%s", table.to_string(index=False))
