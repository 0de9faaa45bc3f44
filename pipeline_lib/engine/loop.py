"""The one training loop: baseline, sparse and finetune stages of every model family.

    result = train(model, criterion=loss_fn, train_loader=loader, evaluate=lambda m: task_eval(m),
                   fitness=task.fitness, cfg=stage_config(cfg, "baseline"), workdir=Path("results/work/baseline"),
                   device=torch.device("cpu"), run_id="ab12...")

Family specifics come in through `criterion(model, batch) -> (loss, {name: float})` (one with
state, such as ReID's class centres, also has `state_dict`/`load_state_dict` and resumes with the
rest), `evaluate(model) -> metrics` and `fitness(metrics) -> float`; stage specifics (the sparsity
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

from ..contracts import Criterion, StatefulCriterion
from ..errors import UserError
from ..failpoints import failpoint
from ..progress import StageClock, epoch_line, progress
from ..torchfile import load_sealed, save_sealed
from . import distributed
from .loggers import Tracking, make_loggers
from .ema import ModelEMA, unwrap
from .optim import build_optimizer, lr_lambda, warmup
from .utils import amp_dtype, rng_state, set_rng_state, to_device

__all__ = ["train", "TrainResult", "Hook", "TrainingDiverged", "channels_last"]

log = logging.getLogger("slimflow")


class TrainingDiverged(UserError):
    """The loss became NaN/inf; the last good checkpoint is left untouched."""


class Hook(Protocol):
    """Optional stage behaviour; every method may be absent."""

    def before_step(self, model: nn.Module, epoch: int, epochs: int) -> None:
        """Runs after gradients are unscaled and before clipping/stepping (e.g. an L1 subgradient)."""

    def after_step(self, optimizer: torch.optim.Optimizer, epoch: int, epochs: int) -> None:
        """Runs after the optimizer's step, before EMA (e.g. the proximal L1 step on BN scales)."""

    def epoch_columns(self, model: nn.Module) -> dict[str, float]:
        """Extra per-epoch CSV columns (e.g. γ statistics)."""

    def on_train_mode(self, model: nn.Module) -> None:
        """Runs after `model.train()` each epoch (e.g. LoRA keeps frozen norm layers in eval mode)."""


@dataclass
class TrainResult:
    state_dict: dict[str, torch.Tensor]  # best weights (EMA when enabled), by fitness
    metrics: dict[str, float]
    fitness: float
    epoch: int  # 1-based epoch the best weights come from
    history: list[dict[str, Any]] = field(default_factory=list)


def channels_last(setting: bool | str, device: torch.device) -> bool:
    """`train.channels_last`: "auto" is NHWC on CUDA only (tensor cores); CPUs differ (measure)."""
    return device.type == "cuda" if setting == "auto" else bool(setting)


@dataclass
class _LoopState:
    """Everything a resumed run needs, with ONE state_dict: a new piece of state is added here only."""

    model: nn.Module  # possibly DDP-wrapped
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    ema: ModelEMA | None
    criterion: Criterion
    run_id: str
    epoch: int = 0  # epochs completed
    best: dict[str, Any] = field(default_factory=lambda: {"fitness": -math.inf, "metrics": {}, "epoch": 0})
    history: list[dict[str, Any]] = field(default_factory=list)

    def state_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "epoch": self.epoch, "model": unwrap(self.model).state_dict(),
                "ema": self.ema.module.state_dict() if self.ema is not None else None,
                "ema_updates": self.ema.updates if self.ema is not None else 0,
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(), "rng": rng_state(), "best": self.best, "history": self.history,
                "criterion": self.criterion.state_dict() if isinstance(self.criterion, StatefulCriterion) else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        unwrap(self.model).load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None:
            self.ema.module.load_state_dict(state["ema"])
            self.ema.updates = state["ema_updates"]
        if state.get("criterion") is not None:
            self.criterion.load_state_dict(state["criterion"])
        set_rng_state(state["rng"])
        self.epoch, self.best, self.history = state["epoch"], state["best"], state["history"]


@dataclass
class _Run:
    """What every epoch of one training run shares (settings, hooks, where state goes)."""

    cfg: dict
    hooks: Sequence[Hook]
    device: torch.device
    lr_factor: Callable[[int], float]  # the schedule: lr of an epoch = initial lr x lr_factor(epoch)
    amp_dtype: torch.dtype | None  # None: no autocast
    global_batch: int  # the batch all ranks step on together
    evaluate: Callable[[nn.Module], dict[str, float]]
    fitness: Callable[[dict], float]
    workdir: Path
    desc: str
    loggers: list = field(default_factory=list)
    loss_scale: int = 1  # the world size for a loss summed over each process's batch (see train)
    clock: StageClock | None = None  # the stage's ETA, from the epochs this process runs

    @property
    def accumulate(self) -> int:
        """Batches per optimizer step after warmup: the nominal batch over the global one."""
        return max(round(self.cfg["nominal_batch_size"] / self.global_batch), 1)

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float16, enabled=self.amp_dtype is not None)

    last_path = property(lambda self: self.workdir / "last.pt")
    best_path = property(lambda self: self.workdir / "best.pt")


def train(model: nn.Module, *, criterion: Criterion, train_loader: torch.utils.data.DataLoader,
          evaluate: Callable[[nn.Module], dict[str, float]], fitness: Callable[[dict], float],
          cfg: dict, workdir: Path, device: torch.device, run_id: str,
          hooks: Sequence[Hook] = (), desc: str = "train", loss_sums_over_batch: bool = False,
          mlflow_store: Path | None = None) -> TrainResult | None:
    """Rank 0 returns the best weights. A loss summed over a process's images (YOLOv5's) is scaled by
    the world size: DDP averages gradients over ranks, one process sums over the global batch.
    `mlflow_store`: the folder `train.loggers: [mlflow]` records in."""
    Path(workdir).mkdir(parents=True, exist_ok=True)
    main = distributed.is_main()
    loggers = make_loggers(cfg.get("loggers", []), Path(workdir), Tracking(desc, cfg, mlflow_store)) if main else []
    run = _Run(cfg, hooks, device, lr_lambda(cfg["scheduler"], cfg["epochs"], cfg["lrf"], cfg.get("milestones", ())),
               amp_dtype(cfg["amp"], device),
               train_loader.batch_size * distributed.world_size(), evaluate, fitness, Path(workdir), desc,
               loggers,
               distributed.world_size() if loss_sums_over_batch else 1)
    state = _setup(model, criterion, run, run_id)
    run.clock = StageClock(cfg["epochs"], state.epoch)
    for epoch in range(state.epoch, cfg["epochs"]):
        t0 = time.time()
        sums = distributed.all_mean(_train_epoch(state, run, train_loader, epoch))  # every rank's mean
        lrs = [group["lr"] for group in state.optimizer.param_groups]
        state.scheduler.step()
        if main:  # rank 0 evaluates, logs and writes the resume state for all ranks
            row = {"epoch": epoch + 1, **{f"train/{k}": v / len(train_loader) for k, v in sums.items()}}
            _end_epoch(state, run, row, lrs, t0)
    for logger in run.loggers:
        logger.close(state.best)
    distributed.barrier()
    if not main:
        return None
    best = state.best
    return TrainResult(_load_resume(run.best_path)["state_dict"], best["metrics"], best["fitness"], best["epoch"],
                       state.history)


def _setup(model: nn.Module, criterion: Criterion, run: _Run, run_id: str) -> _LoopState:
    """The model on its device (NHWC, DDP when several processes), optimizer, schedule, scaler and
    EMA, resumed from workdir/last.pt when that belongs to this run."""
    cfg, device = run.cfg, run.device
    weight_decay = cfg["weight_decay"] * run.global_batch * run.accumulate / cfg["nominal_batch_size"]
    model.to(device)
    if channels_last(cfg.get("channels_last", "auto"), device):
        model.to(memory_format=torch.channels_last)
    if distributed.world_size() > 1:
        if cfg["sync_bn"]:  # same Parameters, so hooks holding the old BN modules still see them
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = build_optimizer(model, cfg["optimizer"], cfg["lr0"], cfg["momentum"], weight_decay)
    state = _LoopState(model, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=run.lr_factor),
                       torch.amp.GradScaler(device.type, enabled=run.amp_dtype == torch.float16),  # bf16: no scaling
                       ModelEMA(model, cfg["ema_decay"], cfg["ema_tau"]) if cfg["ema"] else None, criterion, run_id)
    saved = _load_resume(run.last_path) if run.last_path.exists() else None
    if saved is not None and saved.get("run_id") == run_id:
        state.load_state_dict(saved)
        if distributed.is_main():
            log.info("%s: resuming from %s after epoch %d/%d", run.desc, run.last_path, state.epoch, cfg["epochs"])
    elif saved is not None and distributed.is_main():
        log.info("%s: ignoring %s (it belongs to a different config or input)", run.desc, run.last_path)
    return state


def _end_epoch(state: _LoopState, run: _Run, row: dict[str, Any], lrs: list[float], t0: float) -> None:
    """Rank 0 after an epoch: validate when due (keeping the best weights), log the row, save the resume state."""
    epoch, epochs = row["epoch"], run.cfg["epochs"]
    eval_model = state.ema.module if state.ema is not None else unwrap(state.model)
    if epoch == epochs or epoch % run.cfg["val_interval"] == 0:
        failpoint("evaluate")
        metrics = run.evaluate(eval_model)
        score = run.fitness(metrics)
        row.update({f"metrics/{k}": v for k, v in metrics.items()})
        row["fitness"] = score
        if score > state.best["fitness"]:
            state.best = {"fitness": score, "metrics": metrics, "epoch": epoch}
            save_sealed(run.best_path, {"state_dict": eval_model.state_dict(), "run_id": state.run_id})
    for hook in run.hooks:
        if hasattr(hook, "epoch_columns"):
            row.update(hook.epoch_columns(unwrap(state.model)))
    row.update({f"lr/pg{j}": lr for j, lr in enumerate(lrs)})
    row["time_s"] = round(time.time() - t0, 3)
    state.history.append(row)
    for logger in run.loggers:
        logger.log_row(row)
    state.epoch = epoch
    progress.info(epoch_line(run.desc, row, epochs=epochs, seconds=row["time_s"], eta=run.clock.eta(epoch)))
    save_sealed(run.last_path, state.state_dict())  # sealed: a damaged resume state is refused, never resumed


def _train_epoch(state: _LoopState, run: _Run, loader: torch.utils.data.DataLoader, epoch: int) -> dict[str, float]:
    """One pass over `loader` with warmup, accumulation, clipping, hooks and EMA; returns summed loss items."""
    model, optimizer, scaler, cfg = state.model, state.optimizer, state.scaler, run.cfg
    epochs, nb = cfg["epochs"], len(loader)
    nw, accumulate = round(cfg["warmup_epochs"] * nb), run.accumulate
    last_step = nb * epoch - 1
    model.train()
    for hook in run.hooks:
        if hasattr(hook, "on_train_mode"):
            hook.on_train_mode(model)
    for obj in (loader.sampler, loader.dataset):
        if hasattr(obj, "set_epoch"):
            obj.set_epoch(epoch)
    epoch_lr = [group["initial_lr"] * run.lr_factor(epoch) for group in optimizer.param_groups]
    sums: dict[str, float] = {}
    # a bar on a terminal only: in a log file (a Snakemake job's stderr) it would be carriage returns
    bar = tqdm(loader, desc=f"{run.desc} {epoch + 1}/{epochs}", file=sys.stderr, mininterval=0.5,
               disable=not (distributed.is_main() and sys.stderr.isatty()), dynamic_ncols=True)
    optimizer.zero_grad(set_to_none=True)
    for i, batch in enumerate(bar):
        ni = i + nb * epoch
        if ni <= nw:
            warmup(optimizer, ni, nw, epoch_lr, cfg)
            accumulate = max(1, round(float(np.interp(ni, [0, nw], [1, cfg["nominal_batch_size"] / run.global_batch]))))
        with run.autocast():
            loss, items = state.criterion(model, to_device(batch, run.device))
        if not torch.isfinite(loss):
            good = f"{run.last_path} (after epoch {epoch})" if epoch else "none yet"
            raise TrainingDiverged(f"{run.desc}: loss is {loss.item()} at epoch {epoch + 1}, batch {i + 1}; "
                                   f"last good checkpoint: {good}. Lower train.lr0 or check the data.")
        scaler.scale(loss * run.loss_scale).backward()
        if ni - last_step >= accumulate or i == nb - 1:  # epoch-local phase: resume-exact
            _step(state, run, epoch)
            last_step = ni
        for k, v in items.items():
            sums[k] = sums.get(k, 0.0) + v
        bar.set_postfix({k: f"{v / (i + 1):.4g}" for k, v in sums.items()}, refresh=False)
    bar.close()
    return sums


def _step(state: _LoopState, run: _Run, epoch: int) -> None:
    """One optimizer step on the accumulated gradients: unscale, hooks (the L1 subgradient), clip, step,
    hooks (the proximal L1 step), EMA."""
    scaler, optimizer = state.scaler, state.optimizer
    scaler.unscale_(optimizer)
    for hook in run.hooks:
        if hasattr(hook, "before_step"):
            hook.before_step(state.model, epoch, run.cfg["epochs"])
    if run.cfg["clip_grad_norm"] > 0:
        nn.utils.clip_grad_norm_(state.model.parameters(), run.cfg["clip_grad_norm"])
    failpoint("step")
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    for hook in run.hooks:
        if hasattr(hook, "after_step"):
            hook.after_step(optimizer, epoch, run.cfg["epochs"])
    if state.ema is not None:
        state.ema.update(state.model)


def _load_resume(path: Path) -> dict:
    state = load_sealed(path, remedy="delete it to start this stage over")  # truncated, damaged or edited: one line
    if not isinstance(state, dict):
        raise UserError(f"{path}: not a slimflow resume state; delete it to start this stage over")
    return state
