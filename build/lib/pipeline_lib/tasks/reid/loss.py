"""ReID losses: label-smoothed identity CE, batch-hard triplet, optional center loss.

    loss = ReIDLoss(num_classes=751, feat_dim=2048, hyp={"id": 1.0, "triplet": 1.0, "margin": 0.3,
                    "label_smoothing": 0.1, "center": 0.0})
    total, items = loss(logits, feat, labels)     # feat: the pooled feature before the BNNeck

Hermans et al. (2017) batch-hard mining: for each anchor, its farthest positive and nearest
negative in the batch (Euclidean, unnormalised features, as reid-strong-baseline).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["pairwise_distance", "hard_example_mining", "triplet_loss", "CenterLoss", "ReIDLoss", "distill_loss"]


def pairwise_distance(x: torch.Tensor) -> torch.Tensor:
    """Euclidean distances (N, N) between rows of x (N, D); clamped so the sqrt has a gradient at 0."""
    sq = x.pow(2).sum(1, keepdim=True)
    return (sq + sq.T - 2 * x @ x.T).clamp(min=1e-12).sqrt()


def hard_example_mining(dist: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(hardest positive distance, hardest negative distance) per anchor, each (N,).

    The anchor itself counts as a positive (distance ~0), so an identity seen once has d_ap ~ 0;
    an anchor without negatives gets d_an = +inf and contributes no loss.
    """
    same = labels[:, None] == labels[None, :]
    d_ap = dist.masked_fill(~same, float("-inf")).max(1).values
    d_an = dist.masked_fill(same, float("inf")).min(1).values
    return d_ap, d_an


def triplet_loss(feat: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
    d_ap, d_an = hard_example_mining(pairwise_distance(feat), labels)
    return F.relu(d_ap - d_an + margin).mean()


class CenterLoss(nn.Module):
    """Wen et al. (ECCV 2016): pull features to their class centre.

    The centres are a buffer updated by the paper's rule c_j -= alpha * sum_i(c_j - x_i) / (1 + n_j)
    instead of a second optimiser, so the engine's one optimiser stays the only one. They live
    with the criterion: a resumed run starts them from zero again.
    """

    def __init__(self, num_classes: int, feat_dim: int, alpha: float = 0.5):
        super().__init__()
        self.alpha = alpha
        self.register_buffer("centers", torch.zeros(num_classes, feat_dim))

    def forward(self, feat: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.centers.device != feat.device:
            self.centers = self.centers.to(feat.device)
        centers = self.centers[labels]  # (N, D)
        loss = (feat - centers).pow(2).sum(1).mean() / 2
        if self.training:
            with torch.no_grad():
                diff = torch.zeros_like(self.centers).index_add_(0, labels, centers - feat.detach().float())
                counts = torch.bincount(labels, minlength=len(self.centers)).to(diff)
                self.centers -= self.alpha * diff / (1 + counts[:, None])
        return loss


class ReIDLoss(nn.Module):
    """id·CE(ε) + triplet·batch-hard(margin) [+ center·center loss]; returns (loss, items for the log)."""

    def __init__(self, num_classes: int, feat_dim: int, hyp: dict):
        super().__init__()
        self.hyp = hyp
        self.center = CenterLoss(num_classes, feat_dim, hyp["center_alpha"]) if hyp["center"] > 0 else None

    def forward(self, logits: torch.Tensor, feat: torch.Tensor, labels: torch.Tensor):
        h = self.hyp
        ce = F.cross_entropy(logits, labels, label_smoothing=h["label_smoothing"])
        tri = triplet_loss(feat, labels, h["margin"])
        loss = h["id"] * ce + h["triplet"] * tri
        items = {"id": ce.item(), "triplet": tri.item(), "acc": (logits.argmax(1) == labels).float().mean().item()}
        if self.center is not None:
            cen = self.center(feat, labels)
            loss = loss + h["center"] * cen
            items["center"] = cen.item()
        return loss, items


def distill_loss(student: tuple[torch.Tensor, torch.Tensor], teacher: tuple[torch.Tensor, torch.Tensor],
                 temperature: float) -> torch.Tensor:
    """Hinton's KL between the identity distributions softened by `temperature` (times T²), plus
    the squared distance of the L2-normalised pooled features (2 - 2 cos: the feature's direction,
    which retrieval ranks by, without its scale). Inputs: (logits, feature before the BNNeck)."""
    (s_logits, s_feat), (t_logits, t_feat) = student, teacher
    kl = F.kl_div(F.log_softmax(s_logits.float() / temperature, 1), F.log_softmax(t_logits.float() / temperature, 1),
                  reduction="batchmean", log_target=True) * temperature ** 2
    embedding = (F.normalize(s_feat.float(), dim=1) - F.normalize(t_feat.float(), dim=1)).square().sum(1).mean()
    return kl + embedding
