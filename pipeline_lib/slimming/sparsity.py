"""L1 sparsity on BatchNorm scales as an engine hook, and γ statistics for the per-epoch CSV.

    hook = L1Sparsity(prunable_bns, sr=1e-3, decay="linear")
    train(..., hooks=[hook])      # adds sr·sign(γ) to every prunable γ's gradient before each step
    L1Sparsity(prunable_bns, sr=0.5, step="proximal")   # or shrinks |γ| by lr·sr after each step
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
    """sr·Σ|γ| over the given BN scales, in one of two ways (β is left alone):

    - `step="gradient"`: its subgradient sr·sign(γ) is added after backward, before the step
      (network slimming, yolov5prune). Under SGD γ moves by lr·sr; under Adam, which divides each
      coordinate by its own RMS, every γ shrinks by about lr per step whatever its loss gradient
      once sr outweighs that gradient (docs/BENCHMARKS.md, "The sparsity stage on real digits").
    - `step="proximal"`: after the optimizer's step, γ ← sign(γ)·max(|γ| − lr·sr, 0), the proximal
      step of the L1 term (soft thresholding, decoupled from the optimizer as AdamW decouples weight
      decay). sr is then a fraction of the learning rate per step: the loss's own step decides which
      scales hold, and a scale the loss does not defend reaches exactly 0.

    `decay="linear"` lowers sr to 10% of its value over the epochs, as yolov5prune does, so the
    last epochs recover accuracy while the small scales stay small.
    """

    def __init__(self, bns: list[nn.Module], sr: float, decay: str = "none", step: str = "gradient"):
        self.bns, self.sr, self.decay, self.step = list(bns), sr, decay, step

    def strength(self, epoch: int, epochs: int) -> float:
        return self.sr * (1 - 0.9 * epoch / epochs) if self.decay == "linear" else self.sr

    @torch.no_grad()
    def before_step(self, model: nn.Module, epoch: int, epochs: int) -> None:
        if self.step != "gradient":
            return
        s = self.strength(epoch, epochs)
        for bn in self.bns:
            if bn.weight.grad is not None:
                bn.weight.grad.add_(torch.sign(bn.weight), alpha=s)

    @torch.no_grad()
    def after_step(self, optimizer: torch.optim.Optimizer, epoch: int, epochs: int) -> None:
        if self.step != "proximal":
            return
        lr = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
        s = self.strength(epoch, epochs)
        for bn in self.bns:
            if id(bn.weight) in lr:
                shrunk = (bn.weight.abs() - lr[id(bn.weight)] * s).clamp_(min=0)
                bn.weight.copy_(torch.sign(bn.weight) * shrunk)

    def epoch_columns(self, model: nn.Module) -> dict[str, float]:
        return gamma_stats(self.bns)
