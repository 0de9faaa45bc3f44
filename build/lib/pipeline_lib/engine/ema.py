"""Exponential moving average of model weights (YOLOv5's ModelEMA).

    ema = ModelEMA(model, decay=0.9999, tau=2000); ...; ema.update(model); evaluate(ema.module)

The decay ramps up as d·(1 − exp(−updates/tau)): early averages follow the fast-moving weights,
later ones smooth them. Buffers (BN running stats) are averaged too. The average is a lerp
(v + (1 − d)·(w − v)), so a frozen tensor (a LoRA stage's base weights) stays bitwise equal.
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn

__all__ = ["ModelEMA"]


class ModelEMA:
    def __init__(self, model: nn.Module, decay: float = 0.9999, tau: float = 2000, updates: int = 0):
        self.module = copy.deepcopy(unwrap(model)).eval()
        self.decay, self.tau, self.updates = decay, tau, updates
        for p in self.module.parameters():
            p.requires_grad_(False)

    def current_decay(self) -> float:
        return self.decay * (1 - math.exp(-self.updates / self.tau))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.current_decay()
        source = unwrap(model).state_dict()
        for name, value in self.module.state_dict().items():
            if value.dtype.is_floating_point:  # lerp: a tensor training leaves alone stays bit for bit
                value.lerp_(source[name].detach(), 1 - d)
            else:  # e.g. BN num_batches_tracked
                value.copy_(source[name])


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside a DistributedDataParallel/DataParallel wrapper."""
    return model.module if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)) else model
