"""One function per pipeline step, with plain arguments (paths and config sections).

`workflow/scripts/*.py` and `python -m pipeline_lib STEP` both call these, so a step behaves the
same under Snakemake, SLURM or by hand.

    prepare_dataset(dataset_cfg=cfg["dataset"], task="detection", seed=0, manifest_path="results/data/dataset.json")
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import pandas as pd

from .checkpoint import build_from_checkpoint, load_checkpoint, save_checkpoint
from .config import config_hash, defaults
from .engine import seed_everything, select_device, train
from .io import atomic_path, read_json, sha256_file, write_json
from .profile import count_flops, count_params
from .tasks import get_task

__all__ = ["prepare_dataset", "train_stage", "evaluate_stage"]

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
    model); without it the model is built from `model_cfg`.
    """
    family = get_task(task)
    manifest = read_json(manifest_path)
    seed_everything(seed)
    if init_checkpoint is not None:
        parent = load_checkpoint(init_checkpoint, family=task)
        model, arch, parent_hash = build_from_checkpoint(parent), parent["arch"], sha256_file(init_checkpoint)
    else:
        arch = family.arch(model_cfg, manifest)
        model, parent_hash = family.build_model(arch), None
    imgsz, dev = model_cfg["imgsz"], select_device(device)
    loader_args = dict(imgsz=imgsz, batch_size=train_cfg["batch_size"], workers=train_cfg["workers"], seed=seed)
    train_loader = family.loader(manifest, "train", train=True, augment=train_cfg["augment"], **loader_args)
    val_loader = family.loader(manifest, "val", train=False, **loader_args)
    val_cfg = defaults()["evaluate"]  # fixed, so editing `evaluate:` never retrains
    data_hash = config_hash(manifest["checksums"])
    run_hash = config_hash({"stage": stage, "train": train_cfg, "arch": arch, "imgsz": imgsz,
                            "parent": parent_hash, "data": data_hash, "seed": seed})
    result = train(model, criterion=family.criterion(model, train_cfg), train_loader=train_loader,
                   evaluate=lambda m: family.evaluate(m, val_loader, dev, val_cfg, manifest),
                   fitness=family.fitness, cfg=train_cfg, workdir=Path(workdir), device=dev,
                   run_id=run_hash, desc=stage)
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
