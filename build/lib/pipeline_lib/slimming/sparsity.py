"""L1 sparsity on BatchNorm scales as an engine hook, and γ statistics for the per-epoch CSV.

    hook = L1Sparsity(prunable_bns, sr=1e-3, decay="linear")
    train(..., hooks=[hook])      # adds sr·sign(γ) to every prunable γ's gradient before each step
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["L1Sparsity", "gamma_stats"]


@torch.no_grad()
def gamma_stats(bns: list[nn.Module]) -> dict[str, float]:
    """Quantiles of |γ| and the fractions below 1e-2 and 1e-3 over all given BN channels."""
    gamma = torch.cat([bn.weight.detach().abs().flatten().float().cpu() for bn in bns])
    q = torch.quantile(gamma, torch.tensor([0.1, 0.5, 0.9]))
    return {"gamma/q10": float(q[0]), "gamma/q50": float(q[1]), "gamma/q90": float(q[2]),
            "gamma/frac_lt_1e-2": float((gamma < 1e-2).float().mean()),
            "gamma/frac_lt_1e-3": float((gamma < 1e-3).float().mean())}


class L1Sparsity:
    """The subgradient of sr·Σ|γ| (network slimming), added after backward, before the step.

    `decay="linear"` lowers sr to 10% of its value over the epochs, as yolov5prune does, so the
    last epochs recover accuracy while the small scales stay small. β is left alone.
    """

    def __init__(self, bns: list[nn.Module], sr: float, decay: str = "none"):
        self.bns, self.sr, self.decay = list(bns), sr, decay

    def strength(self, epoch: int, epochs: int) -> float:
        return self.sr * (1 - 0.9 * epoch / epochs) if self.decay == "linear" else self.sr

    @torch.no_grad()
    def before_step(self, model: nn.Module, epoch: int, epochs: int) -> None:
        s = self.strength(epoch, epochs)
        for bn in self.bns:
            if bn.weight.grad is not None:
                bn.weight.grad.add_(torch.sign(bn.weight), alpha=s)

    def epoch_columns(self, model: nn.Module) -> dict[str, float]:
        return gamma_stats(self.bns)
