"""Optimizer, parameter groups and learning-rate schedule (YOLOv5 conventions).

    optimizer = build_optimizer(model, "sgd", lr=0.01, momentum=0.937, weight_decay=5e-4)
    lf = lr_lambda("cosine", epochs=30, lrf=0.01)   # multiplier of lr0 at epoch e
"""
from __future__ import annotations

import bisect
import math
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

__all__ = ["param_groups", "build_optimizer", "lr_lambda", "warmup", "OPTIMIZERS"]

_NORMS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)


def param_groups(model: nn.Module) -> tuple[list, list, list]:
    """(decayed weights, norm weights, biases): only the first group gets weight decay.

    Decaying BN γ would fight the sparsity penalty and shrink scales for no reason; biases
    get their own group because warmup gives them a separate (high) learning rate.
    """
    decay, norm, bias = [], [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            if name == "bias":
                bias.append(p)
            elif isinstance(module, _NORMS):
                norm.append(p)
            else:
                decay.append(p)
    return decay, norm, bias


OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "sgd": lambda params, lr, momentum: torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=True),
    "adam": lambda params, lr, momentum: torch.optim.Adam(params, lr=lr, betas=(momentum, 0.999)),
    "adamw": lambda params, lr, momentum: torch.optim.AdamW(params, lr=lr, betas=(momentum, 0.999)),
}


def build_optimizer(model: nn.Module, name: str, lr: float, momentum: float, weight_decay: float) -> torch.optim.Optimizer:
    """Three named groups ("name": decay, norm, bias), in that order (the CSV's lr/pg0..2)."""
    decay, norm, bias = param_groups(model)
    groups = [{"name": "decay", "params": decay, "weight_decay": weight_decay},
              {"name": "norm", "params": norm, "weight_decay": 0.0},
              {"name": "bias", "params": bias, "weight_decay": 0.0}]
    return OPTIMIZERS[name](groups, lr, momentum)


def lr_lambda(kind: str, epochs: int, lrf: float, milestones: Sequence[float] = (0.5, 0.75)) -> Callable[[int], float]:
    """LR multiplier per epoch, falling from 1 to `lrf` over `epochs`.

    `multistep` (with the loop's warmup: reid-strong-baseline's WarmupMultiStepLR) holds 1, then
    multiplies by lrf^(1/n) at each of the n `milestones` (fractions of `epochs`), ending at lrf.
    """
    if kind == "cosine":
        return lambda e: ((1 - math.cos(e * math.pi / epochs)) / 2) * (lrf - 1) + 1
    if kind == "linear":
        return lambda e: (1 - e / epochs) * (1.0 - lrf) + lrf
    if kind == "multistep":
        steps = sorted(round(m * epochs) for m in milestones)
        return lambda e: lrf ** (bisect.bisect_right(steps, e) / max(len(steps), 1))
    raise ValueError(f"unknown scheduler {kind!r}")


def warmup(optimizer: torch.optim.Optimizer, ni: int, nw: int, epoch_lr: Sequence[float], cfg: dict) -> None:
    """Linear warmup: biases fall from warmup_bias_lr, other groups rise from 0; momentum rises too."""
    for group, lr in zip(optimizer.param_groups, epoch_lr):
        start = cfg["warmup_bias_lr"] if group.get("name") == "bias" else 0.0
        group["lr"] = float(np.interp(ni, [0, nw], [start, lr]))
        if "momentum" in group:
            group["momentum"] = float(np.interp(ni, [0, nw], [cfg["warmup_momentum"], cfg["momentum"]]))
        elif "betas" in group:
            group["betas"] = (float(np.interp(ni, [0, nw], [cfg["warmup_momentum"], cfg["momentum"]])), group["betas"][1])
