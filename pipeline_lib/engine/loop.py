"""The one training loop: baseline, sparse and finetune stages of every model family.

    result = train(model, criterion=loss_fn, train_loader=loader, evaluate=lambda m: task_eval(m),
                   fitness=task.fitness, cfg=stage_config(cfg, "baseline"), workdir=Path("results/work/baseline"),
                   device=torch.device("cpu"), run_id="ab12...")

Family specifics come in through `criterion(model, batch) -> (loss, {name: float})` (a criterion
with state of its own, such as ReID's class centres, also has `state_dict`/`load_state_dict`
and resumes with the rest),
`evaluate(model) -> metrics` and `fitness(metrics) -> float`; stage specifics (the sparsity
penalty) through hooks. Resume state lives in `workdir/last.pt`; it is reused only when its
`run_id` matches, so a changed config starts over instead of resuming someone else's run.
"""
from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..errors import UserError
from ..failpoints import failpoint
from ..io import atomic_path
from . import distributed
from .ema import ModelEMA, unwrap
from .optim import build_optimizer, lr_lambda
from .utils import rng_state, set_rng_state, to_device

__all__ = ["train", "TrainResult", "Hook", "TrainingDiverged"]

log = logging.getLogger("slimflow")

Criterion = Callable[[nn.Module, dict], tuple[torch.Tensor, dict[str, float]]]


class TrainingDiverged(UserError):
    """The loss became NaN/inf; the last good checkpoint is left untouched."""


class Hook(Protocol):
    """Optional stage behaviour; every method may be absent."""

    def before_step(self, model: nn.Module, epoch: int, epochs: int) -> None:
        """Runs after gradients are unscaled and before clipping/stepping (e.g. an L1 subgradient)."""

    def epoch_columns(self, model: nn.Module) -> dict[str, float]:
        """Extra per-epoch CSV columns (e.g. γ statistics)."""


@dataclass
class TrainResult:
    state_dict: dict[str, torch.Tensor]  # best weights (EMA when enabled), by fitness
    metrics: dict[str, float]
    fitness: float
    epoch: int  # 1-based epoch the best weights come from
    history: list[dict[str, Any]] = field(default_factory=list)


def _warmup(optimizer: torch.optim.Optimizer, ni: int, nw: int, epoch_lr: Sequence[float], cfg: dict) -> None:
    """Linear warmup: biases fall from warmup_bias_lr, other groups rise from 0; momentum rises too."""
    for j, group in enumerate(optimizer.param_groups):
        start = cfg["warmup_bias_lr"] if j == 2 else 0.0
        group["lr"] = float(np.interp(ni, [0, nw], [start, epoch_lr[j]]))
        if "momentum" in group:
            group["momentum"] = float(np.interp(ni, [0, nw], [cfg["warmup_momentum"], cfg["momentum"]]))
        elif "betas" in group:
            group["betas"] = (float(np.interp(ni, [0, nw], [cfg["warmup_momentum"], cfg["momentum"]])), group["betas"][1])


def _save(path: Path, obj: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def train(model: nn.Module, *, criterion: Criterion, train_loader: torch.utils.data.DataLoader,
          evaluate: Callable[[nn.Module], dict[str, float]], fitness: Callable[[dict], float],
          cfg: dict, workdir: Path, device: torch.device, run_id: str,
          hooks: Sequence[Hook] = (), desc: str = "train") -> TrainResult | None:
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    main, world = distributed.is_main(), distributed.world_size()
    epochs, bs = cfg["epochs"], train_loader.batch_size * world  # the batch all ranks step on together
    accumulate = max(round(cfg["nominal_batch_size"] / bs), 1)
    weight_decay = cfg["weight_decay"] * bs * accumulate / cfg["nominal_batch_size"]

    model.to(device)
    if device.type == "cuda":  # NHWC convolutions are faster on tensor cores
        model.to(memory_format=torch.channels_last)
    if world > 1:
        if cfg["sync_bn"]:  # same Parameters, so hooks holding the old BN modules still see them
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = build_optimizer(model, cfg["optimizer"], cfg["lr0"], cfg["momentum"], weight_decay)
    lf = lr_lambda(cfg["scheduler"], epochs, cfg["lrf"], cfg.get("milestones", ()))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=lf)
    use_amp = cfg["amp"] and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp and amp_dtype == torch.float16)  # bf16 needs no scaling
    ema = ModelEMA(model, cfg["ema_decay"], cfg["ema_tau"]) if cfg["ema"] else None

    start_epoch, best, history = 0, {"fitness": -math.inf, "metrics": {}, "epoch": 0}, []
    last_path, best_path = workdir / "last.pt", workdir / "best.pt"
    if last_path.exists():
        state = _load_resume(last_path)
        if state.get("run_id") == run_id:
            unwrap(model).load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            scaler.load_state_dict(state["scaler"])
            if ema is not None:
                ema.module.load_state_dict(state["ema"])
                ema.updates = state["ema_updates"]
            if state.get("criterion") is not None:
                criterion.load_state_dict(state["criterion"])
            set_rng_state(state["rng"])
            start_epoch, best, history = state["epoch"], state["best"], state["history"]
            if main:
                log.info("%s: resuming from %s after epoch %d/%d", desc, last_path, start_epoch, epochs)
        elif main:
            log.info("%s: ignoring %s (it belongs to a different config or input)", desc, last_path)

    nb = len(train_loader)
    nw = round(cfg["warmup_epochs"] * nb)
    for epoch in range(start_epoch, epochs):
        t0 = time.time()
        last_step = nb * epoch - 1
        model.train()
        for obj in (train_loader.sampler, train_loader.dataset):
            if hasattr(obj, "set_epoch"):
                obj.set_epoch(epoch)
        epoch_lr = [group["initial_lr"] * lf(epoch) for group in optimizer.param_groups]
        sums: dict[str, float] = {}
        bar = tqdm(train_loader, desc=f"{desc} {epoch + 1}/{epochs}", file=sys.stderr, disable=not main,
                   mininterval=0.5 if sys.stderr.isatty() else 15, dynamic_ncols=True)
        optimizer.zero_grad(set_to_none=True)
        for i, batch in enumerate(bar):
            ni = i + nb * epoch
            if ni <= nw:
                _warmup(optimizer, ni, nw, epoch_lr, cfg)
                accumulate = max(1, round(float(np.interp(ni, [0, nw], [1, cfg["nominal_batch_size"] / bs]))))
            batch = to_device(batch, device)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                loss, items = criterion(model, batch)
            if not torch.isfinite(loss):
                good = f"{last_path} (after epoch {epoch})" if epoch else "none yet"
                raise TrainingDiverged(f"{desc}: loss is {loss.item()} at epoch {epoch + 1}, batch {i + 1}; "
                                       f"last good checkpoint: {good}. Lower train.lr0 or check the data.")
            scaler.scale(loss).backward()
            if ni - last_step >= accumulate or i == nb - 1:  # epoch-local phase: resume-exact
                scaler.unscale_(optimizer)
                for hook in hooks:
                    if hasattr(hook, "before_step"):
                        hook.before_step(model, epoch, epochs)
                if cfg["clip_grad_norm"] > 0:
                    nn.utils.clip_grad_norm_(model.parameters(), cfg["clip_grad_norm"])
                failpoint("step")
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                if ema is not None:
                    ema.update(model)
                last_step = ni
            for k, v in items.items():
                sums[k] = sums.get(k, 0.0) + v
            bar.set_postfix({k: f"{v / (i + 1):.4g}" for k, v in sums.items()}, refresh=False)
        bar.close()
        lrs = [group["lr"] for group in optimizer.param_groups]
        scheduler.step()
        if not main:  # rank 0 evaluates, logs and writes the resume state for all ranks
            continue

        row: dict[str, Any] = {"epoch": epoch + 1}
        row.update({f"train/{k}": v / nb for k, v in sums.items()})
        final = epoch + 1 == epochs
        eval_model = ema.module if ema is not None else unwrap(model)
        if final or (epoch + 1) % cfg["val_interval"] == 0:
            failpoint("evaluate")
            metrics = evaluate(eval_model)
            score = fitness(metrics)
            row.update({f"metrics/{k}": v for k, v in metrics.items()})
            row["fitness"] = score
            if score > best["fitness"]:
                best = {"fitness": score, "metrics": metrics, "epoch": epoch + 1}
                _save(best_path, {"state_dict": eval_model.state_dict(), "run_id": run_id})
        for hook in hooks:
            if hasattr(hook, "epoch_columns"):
                row.update(hook.epoch_columns(unwrap(model)))
        row.update({f"lr/pg{j}": lr for j, lr in enumerate(lrs)})
        row["time_s"] = round(time.time() - t0, 3)
        history.append(row)
        log.info("%s epoch %d/%d: %s", desc, epoch + 1, epochs,
                 ", ".join(f"{k}={v:.4g}" for k, v in row.items() if k != "epoch"))
        _save(last_path, {"run_id": run_id, "epoch": epoch + 1, "model": unwrap(model).state_dict(),
                          "ema": ema.module.state_dict() if ema is not None else None,
                          "ema_updates": ema.updates if ema is not None else 0,
                          "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                          "scaler": scaler.state_dict(), "rng": rng_state(), "best": best, "history": history,
                          "criterion": criterion.state_dict() if hasattr(criterion, "state_dict") else None})

    distributed.barrier()
    if not main:
        return None
    best_state = _load_resume(best_path)["state_dict"]
    return TrainResult(best_state, best["metrics"], best["fitness"], best["epoch"], history)


def _load_resume(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated file from a kill predating atomic writes, or disk damage
        raise UserError(f"{path}: unreadable resume state ({type(e).__name__}); delete it to start this stage over") from None
