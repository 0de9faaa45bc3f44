"""ReID strong-baseline network: torchvision ResNet trunk, last stride, GAP, BNNeck, bias-free classifier.

    model = ReIDNet(num_classes=751, name="resnet50", last_stride=1, neck_feat="after")
    logits, feat = model.train()(torch.rand(8, 3, 256, 128))   # (8, 751), (8, 2048): CE and triplet inputs
    emb = model.eval()(torch.rand(8, 3, 256, 128))             # (8, 2048): the retrieval embedding

Luo et al., "Bag of Tricks and a Strong Baseline for Deep Person Re-identification" (CVPRW 2019):
the triplet loss sees the feature before the BNNeck, the classifier the one after it; the neck's
bias is frozen at 0 so the normalised feature stays centred for the classifier.
"""
from __future__ import annotations

import torch
import torchvision
from torch import nn

__all__ = ["ARCHS", "ReIDNet"]

ARCHS = {"resnet18": torchvision.models.resnet18, "resnet34": torchvision.models.resnet34,
         "resnet50": torchvision.models.resnet50, "resnet101": torchvision.models.resnet101}


class ReIDNet(nn.Module):
    def __init__(self, num_classes: int, name: str = "resnet18", last_stride: int = 1, neck_feat: str = "after"):
        super().__init__()
        if neck_feat not in ("before", "after"):
            raise ValueError(f"neck_feat must be 'before' or 'after', not {neck_feat!r}")
        self.neck_feat = neck_feat
        # No pretrained weights: nothing may be downloaded at run time.
        self.backbone = ARCHS[name](weights=None)
        dim = self.backbone.fc.in_features
        self.backbone.fc = nn.Identity()  # the trunk ends at its global average pool: (B, dim)
        block = self.backbone.layer4[0]
        # The stride of layer4 sits in conv1 (BasicBlock) or conv2 (torchvision's Bottleneck) and its shortcut.
        strided = block.conv2 if isinstance(block, torchvision.models.resnet.Bottleneck) else block.conv1
        strided.stride = (last_stride, last_stride)
        if block.downsample is not None:
            block.downsample[0].stride = (last_stride, last_stride)
        self.bnneck = nn.BatchNorm1d(dim)
        self.bnneck.bias.requires_grad_(False)  # BNNeck: no shift, as in the strong baseline
        self.classifier = nn.Linear(dim, num_classes, bias=False)
        nn.init.normal_(self.classifier.weight, std=0.001)

    def forward(self, x: torch.Tensor):
        feat = self.backbone(x)  # (B, dim) pooled feature: the triplet loss's input
        if self.training:
            return self.classifier(self.bnneck(feat)), feat
        return self.bnneck(feat) if self.neck_feat == "after" else feat

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Identity scores in the current mode (eval: running BN statistics)."""
        return self.classifier(self.bnneck(self.backbone(x)))
