"""The training step: one stage of the chain with the shared engine, published as a checkpoint.

    train_stage(**jobs.step_args("train", Artifact("", "sparse"), cfg))

Names: `family` is a `task:` value (a string), `task` the family's Task object, and `label` an
artifact's lineage label (`sparse`, `iter/1/sparse`, `sweep/r0.5/pruned_finetuned`).
"""
from __future__ import annotations

import dataclasses
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from .. import adapters, distill
from ..checkpoint import save_checkpoint
from ..config import TRAINED_STAGES, config_hash
from ..engine import distributed, seed_everything, select_device, train
from ..engine.utils import peak_memory_mb
from ..errors import UserError
from ..io import atomic_path, read_json, sha256_file
from ..profile import count_params
from ..runner import setup_logging
from ..slimming import L1Sparsity, prunable_bns
from ..tasks import Criterion, Task, build_from_checkpoint, get_task, load_model
from ..weights import import_weights
from .records import NO_MANIFEST, check_names

__all__ = ["StageSpec", "train_stage", "launch_settings", "merge_lora"]

log = logging.getLogger("slimflow")


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
    weights: str | os.PathLike | None = None  # model.weights of a baseline: the user's own (docs/WEIGHTS.md)
    mlflow_store: str | os.PathLike | None = None  # train.loggers: [mlflow] records here (results/mlruns)


def _section(label: str) -> str:
    """The `stages.<section>` a lineage label trains with (iter/1/pruned_finetuned -> finetune)."""
    return TRAINED_STAGES[label.rpartition("/")[2]]


def train_stage(*, srun: dict | None = None, **fields) -> None:
    """Train one stage with the shared engine; publish the best weights as a checkpoint. `fields`
    are StageSpec's (`jobs.step_args("train", ...)` gives them).

    `init_checkpoint` starts from a parent artifact (its architecture and weights, e.g. a pruned
    model); without it the model is built from `model_cfg` (or `weights`). With `train.nprocs` > 1
    the stage runs in that many DDP processes (one per GPU, or gloo on CPU); `train.batch_size` is their total.
    Started by torchrun or by a multi-task srun step, every process joins that process group and
    its world size replaces nprocs; `srun={"ntasks": N, "nodes": M}` (snakemake's slurm executor,
    `launch_settings`) starts N tasks with srun from inside the job.
    """
    spec = StageSpec(**fields)
    world = distributed.external_world()
    nprocs = world.size if world else (srun or {}).get("ntasks", spec.train_cfg["nprocs"])
    if nprocs != spec.train_cfg["nprocs"]:  # recorded as run: another world size is another run (resume, meta)
        spec = dataclasses.replace(spec, train_cfg={**spec.train_cfg, "nprocs": nprocs})
    if spec.train_cfg["batch_size"] % nprocs:
        over = f"train.nprocs={nprocs}" if world is None and not srun else f"the launcher's {nprocs}"
        raise UserError(f"train.batch_size={spec.train_cfg['batch_size']} is the total over {over} processes: "
                        f"make it a multiple of {nprocs}")
    if world is not None and world.rank != 0:  # every rank runs the CLI under torchrun: rank 0 alone speaks
        log.setLevel(logging.WARNING)
    if nprocs > 1 and (world is None or world.rank == 0):
        how = f"joined {world.source}'s process group" if world else "srun tasks" if srun else "spawned here"
        log.info("%s: %d training processes (%s)", spec.label, nprocs, how)
    distributed.launch(_train_process, nprocs=nprocs, launcher="srun" if srun else "spawn",
                       srun={**srun, "scratch": spec.workdir} if srun else None, spec=spec)


def launch_settings(resources: dict) -> dict:
    """What the train rule's SLURM resources say about starting its processes: with `mpi: srun`,
    `srun={"ntasks": ..., "nodes": ...}` from `tasks` (or `tasks_per_node` x `nodes`); else nothing."""
    if resources.get("mpi") != "srun":
        return {}
    nodes = int(resources.get("nodes") or 1)
    ntasks = resources.get("tasks") or int(resources.get("tasks_per_node") or 1) * nodes
    if int(ntasks) < 2:
        raise UserError("resources mpi: srun for the train rule needs tasks (or tasks_per_node x nodes) of 2 or more")
    return {"srun": {"ntasks": int(ntasks), "nodes": nodes}}


@dataclass
class _Start:
    """The network a stage starts from and what its checkpoint records of that start."""

    model: nn.Module
    arch: dict
    parent_hash: str | None  # sha256 of the parent checkpoint or of the user's weights file
    epochs_before: int  # epochs that trained it already (not known for imported weights: 0)


def _start(spec: StageSpec, task: Task, manifest: dict) -> _Start:
    """The parent artifact, the user's own weights, or a network built from the config."""
    if spec.init_checkpoint is not None:
        parent = load_model(spec.init_checkpoint, family=spec.family)
        check_names(spec.init_checkpoint, parent.ckpt, spec.manifest_path, manifest,
                    "a stage continues its parent's classes (stages.finetune.dataset needs the baseline's)")
        meta, act = parent.ckpt["meta"], spec.train_cfg.get("act")
        arch, model = _with_activation(spec, parent.ckpt, act) if act else (parent.ckpt["arch"], parent.model)
        return _Start(model, arch, sha256_file(spec.init_checkpoint), meta.get("epochs_total", meta.get("epochs", 0)))
    if spec.weights:  # the user's own weights (docs/WEIGHTS.md): their arch, this data's classes
        imported = import_weights(task, spec.weights, spec.model_cfg, manifest)
        return _Start(imported.model, imported.arch, sha256_file(spec.weights), 0)
    arch = task.arch(spec.model_cfg, manifest)
    return _Start(task.build_model(arch), arch, None, 0)


def _with_activation(spec: StageSpec, ckpt: dict, act: str) -> tuple[dict, nn.Module]:
    """`stages.finetune.act`: the parent's architecture with `act` after every conv, and its network
    with the parent's weights (an activation holds none, so the rewritten arch takes them unchanged).
    The arch is what the stage's checkpoint records, so export, evaluate and predict build `act` too."""
    kwargs = ckpt["arch"]["kwargs"]
    if "act" not in kwargs:
        raise UserError(f"{spec.init_checkpoint}: stages.{_section(spec.label)}.act={act!r}, but its "
                        f"{ckpt['arch']['family']} architecture has no activation setting to swap; remove the key")
    if act != kwargs["act"]:
        log.info("%s: activation %s -> %s before training (stages.%s.act)", spec.label, kwargs["act"], act,
                 _section(spec.label))
    arch = {**ckpt["arch"], "kwargs": {**kwargs, "act": act}}
    return arch, build_from_checkpoint({**ckpt, "arch": arch}, spec.init_checkpoint)


def _train_process(spec: StageSpec) -> None:
    """train_stage's body in one (DDP) process; rank 0 publishes."""
    if distributed.world_size() > 1 and distributed.is_main():
        setup_logging(sys.stderr)  # a spawned process: its stderr is the step's log
    task, train_cfg = get_task(spec.family), spec.train_cfg
    manifest = read_json(spec.manifest_path, missing=NO_MANIFEST)
    seed_everything(spec.seed)
    start = _start(spec, task, manifest)
    model, imgsz = start.model, spec.model_cfg["imgsz"]
    dev = distributed.device_for_rank(select_device(spec.device))
    loader_args = dict(imgsz=imgsz, batch_size=train_cfg["batch_size"] // distributed.world_size(),
                       workers=train_cfg["workers"], seed=spec.seed)
    train_loader = task.loader(manifest, "train", train=True, augment=train_cfg["augment"], **loader_args)
    val_loader = task.loader(manifest, "val", train=False, **loader_args)
    hooks, fixed = [], task.keep_width_modules(model)
    if train_cfg.get("sr", 0) > 0:  # the sparse stage: L1 on every prunable BN scale
        bns = prunable_bns(model, task.example_input(imgsz), fixed)
        hooks.append(L1Sparsity(bns, train_cfg["sr"], train_cfg["sr_decay"], train_cfg["sr_step"]))
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
    run_hash = config_hash({"stage": spec.label, "train": train_cfg, "validation": spec.validation, "arch": start.arch,
                            "imgsz": imgsz, "parent": start.parent_hash, "data": data_hash, "seed": spec.seed,
                            **({"teacher": teacher["teacher_sha256"]} if teacher else {})})
    result = train(model, criterion=criterion, train_loader=train_loader,
                   evaluate=lambda m: task.evaluate(m, val_loader, dev, spec.validation, manifest),
                   fitness=task.fitness, cfg=train_cfg, workdir=Path(spec.workdir), device=dev,
                   run_id=run_hash, hooks=hooks, desc=spec.label, loss_sums_over_batch=task.loss_sums_over_batch,
                   mlflow_store=spec.mlflow_store and Path(spec.mlflow_store))
    if result is None:  # not rank 0
        return
    model.load_state_dict(result.state_dict)
    meta = {"stage": spec.label, "epoch": result.epoch, "epochs": train_cfg["epochs"],
            "epochs_total": start.epochs_before + train_cfg["epochs"], "metrics": result.metrics,
            "fitness": result.fitness, "imgsz": imgsz, "names": manifest["names"], "seed": spec.seed,
            "config": train_cfg, "config_hash": config_hash(train_cfg), "run_hash": run_hash,
            "parent": start.parent_hash,
            "parent_path": None if spec.init_checkpoint is None else str(spec.init_checkpoint), "dataset": data_hash,
            "training": {"params": params, "trainable_params": trainable, "peak_mem_mb": round(peak_memory_mb(dev), 1),
                         "seconds_per_epoch": round(sum(r["time_s"] for r in result.history) / len(result.history), 2)},
            **({"distill": teacher} if teacher else {})}
    _publish(spec, model, start.arch, lora, layers, meta, result.history)


def _publish(spec: StageSpec, model: nn.Module, arch: dict, lora: dict | None, layers: list[str], meta: dict,
             history: list[dict]) -> None:
    """The stage's adapter (LoRA), its per-epoch CSV and its checkpoint; then the resume state goes."""
    if lora:
        _publish_adapter(spec, model.cpu(), lora, layers, meta)
    _write_csv(spec.out_csv, history)
    save_checkpoint(spec.out_checkpoint, model.cpu(), arch, meta)
    for name in ("last.pt", "best.pt"):  # published: an interrupted rerun must not resume a finished run
        (Path(spec.workdir) / name).unlink(missing_ok=True)
    log.info("%s: best epoch %d, fitness %.4f, %s -> %s", spec.label, meta["epoch"], meta["fitness"], meta["metrics"],
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
    check_names(spec.teacher_checkpoint, loaded.ckpt, spec.manifest_path, manifest,
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


