"""JointsMSELoss: heatmap regression against Gaussian targets, weighted by keypoint visibility.

    loss_fn = JointsMSELoss(sigma=2.0, use_target_weight=True)
    loss, items = loss_fn(model(batch["images"]), batch["joints"], batch["visible"])   # items: {"heatmap": ...}

As in the official HRNet: 0.5 x the mean squared error over joints and heatmap pixels, where an
unlabelled keypoint's map (weight 0) contributes nothing. Targets are rendered here, at the
prediction's size, from the joints the loader gives in heatmap coordinates.
"""
from __future__ import annotations

import torch
from torch import nn

from .heatmaps import gaussian_targets

__all__ = ["JointsMSELoss", "distill_loss"]


class JointsMSELoss(nn.Module):
    def __init__(self, sigma: float = 2.0, use_target_weight: bool = True):
        super().__init__()
        self.sigma, self.use_target_weight = sigma, use_target_weight

    def forward(self, heatmaps: torch.Tensor, joints: torch.Tensor, visible: torch.Tensor):
        target, weight = gaussian_targets(joints, visible, heatmaps.shape[-2:], self.sigma)
        diff = heatmaps.float() - target
        if self.use_target_weight:
            diff = diff * weight[..., None, None]
        loss = 0.5 * diff.square().mean()
        return loss, {"heatmap": float(loss.detach())}


def distill_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """0.5 x the mean squared difference of the heatmaps: the task loss's form, with the teacher's
    heatmaps (every keypoint, labelled or not) as the targets. Heatmaps are no distribution, so
    no temperature."""
    return 0.5 * (student.float() - teacher.float()).square().mean()
