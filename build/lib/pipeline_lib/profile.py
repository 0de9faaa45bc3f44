"""Model cost: parameters and FLOPs (torch.utils.flop_counter; multiply-adds count as 2).

    params, flops = count_params(model), count_flops(model, torch.rand(1, 3, 128, 128))
"""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .inputs import Inputs, as_tuple

__all__ = ["count_params", "count_flops"]


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_flops(model: nn.Module, example: Inputs) -> int:
    """FLOPs of one eval-mode forward pass on `example` (use batch 1 for per-image FLOPs)."""
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with counter:
        model(*as_tuple(example))
    model.train(was_training)
    return int(counter.get_total_flops())
