"""HRNet V1 for top-down pose (Sun et al., CVPR 2019): parallel high-to-low branches with repeated fusion.

    model = HRNet(num_joints=17, **ARCHS["hrnet_w32"])
    heatmaps = model.eval()(torch.rand(2, 3, 256, 192))   # (2, 17, 64, 48): one map per keypoint at stride 4

The layout follows the official pose_hrnet: a stem of two 3x3 stride-2 convs, a stage of
Bottlenecks, then stages of 2, 3 and 4 branches (widths C, 2C, 4C, 8C) of BasicBlocks. Each
module runs its branches, then fuses: branch i receives every branch j, through 1x1 conv + BN +
nearest upsample (j lower resolution) or i - j strided 3x3 conv + BN (j higher resolution),
summed and passed through ReLU. The last module fuses into branch 0 only, and a 1x1 conv on it
predicts the heatmaps. Every conv but that head is bias-free and followed by BN, so every
channel has a scale for network slimming. The input height and width must be multiples of 32
(four branches halve the quarter-resolution map three times).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

__all__ = ["ARCHS", "HRNet", "BasicBlock", "Bottleneck", "HighResolutionModule"]

# width C: branch widths are C, 2C, 4C, 8C; stem: width of the two stem convs and of the
# Bottlenecks' inner convs (their output is 4x that); modules and blocks: per stage 2, 3, 4.
ARCHS: dict[str, dict] = {
    "hrnet_w32": {"width": 32, "stem": 64, "bottlenecks": 4, "modules": (1, 4, 3), "blocks": (4, 4, 4)},
    "hrnet_w48": {"width": 48, "stem": 64, "bottlenecks": 4, "modules": (1, 4, 3), "blocks": (4, 4, 4)},
    # CPU-sized: wide enough that ONNX Runtime is compute-bound (pruning then pays in latency),
    # shallow enough to train from scratch in minutes on two cores.
    "hrnet_small": {"width": 32, "stem": 32, "bottlenecks": 1, "modules": (1, 1, 1), "blocks": (2, 2, 2)},
}


def _conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, relu: bool = True) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, nn.ReLU(inplace=True)) if relu else nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """Two 3x3 conv + BN with a residual add (identity: HRNet's branches keep their width)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + x)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> 1x1 (x4 channels) with a residual add; a 1x1 conv + BN projects a narrower input."""

    expansion = 4

    def __init__(self, cin: int, planes: int):
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _conv_bn(cin, cout, 1, relu=False) if cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


def _fuse_path(j: int, i: int, widths: Sequence[int]) -> nn.Module:
    """Branch j resampled to branch i's resolution and width."""
    if j > i:  # lower resolution: 1x1 conv + BN, then nearest upsampling (ONNX Resize with fixed scales)
        return nn.Sequential(*_conv_bn(widths[j], widths[i], 1, relu=False),
                             nn.Upsample(scale_factor=2 ** (j - i), mode="nearest"))
    # higher resolution: i - j strided 3x3 convs; the intermediate ones keep branch j's width and a ReLU
    steps = [_conv_bn(widths[j], widths[j], 3, 2) for _ in range(i - j - 1)]
    return nn.Sequential(*steps, _conv_bn(widths[j], widths[i], 3, 2, relu=False))


class HighResolutionModule(nn.Module):
    """`blocks` BasicBlocks per branch, then the fusion (into every branch, or branch 0 only)."""

    def __init__(self, widths: Sequence[int], blocks: int, multi_scale_output: bool = True):
        super().__init__()
        n = len(widths)
        self.branches = nn.ModuleList(nn.Sequential(*(BasicBlock(c) for _ in range(blocks))) for c in widths)
        outputs = n if multi_scale_output else 1
        # fuse[i][j]: branch j into branch i; identity when j == i
        self.fuse = nn.ModuleList(
            nn.ModuleList(nn.Identity() if j == i else _fuse_path(j, i, widths) for j in range(n))
            for i in range(outputs)) if n > 1 else nn.ModuleList()
        self.relu = nn.ReLU(inplace=True)  # on the sum, a fresh tensor

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        if not len(self.fuse):
            return xs
        out = []
        for paths in self.fuse:
            y = paths[0](xs[0])
            for j in range(1, len(xs)):
                y = y + paths[j](xs[j])
            out.append(self.relu(y))
        return out


class HRNet(nn.Module):
    def __init__(self, num_joints: int = 17, width: int = 32, stem: int = 64, bottlenecks: int = 4,
                 modules: Sequence[int] = (1, 4, 3), blocks: Sequence[int] = (4, 4, 4)):
        super().__init__()
        if len(modules) != 3 or len(blocks) != 3:
            raise ValueError(f"modules and blocks need one value per stage 2, 3, 4; got {modules}, {blocks}")
        self.stem = nn.Sequential(_conv_bn(3, stem, 3, 2), _conv_bn(stem, stem, 3, 2))
        layer1 = [Bottleneck(stem, stem)]
        layer1 += [Bottleneck(stem * Bottleneck.expansion, stem) for _ in range(bottlenecks - 1)]
        self.layer1 = nn.Sequential(*layer1)
        widths = [width * 2 ** b for b in range(4)]
        previous = [stem * Bottleneck.expansion]
        self.transitions, self.stages = nn.ModuleList(), nn.ModuleList()
        for s, (n_modules, n_blocks) in enumerate(zip(modules, blocks)):
            current = widths[: s + 2]
            self.transitions.append(self._transition(previous, current))
            last = s == len(modules) - 1
            self.stages.append(nn.Sequential(*(HighResolutionModule(current, n_blocks, not (last and m == n_modules - 1))
                                               for m in range(n_modules))))
            previous = current
        self.final_layer = nn.Conv2d(widths[0], num_joints, 1)  # the heatmap head: kept in width and in float
        self._init_weights()

    def _init_weights(self) -> None:
        # The official initialisation: small conv weights (BN rescales all but the head), so the
        # first heatmaps are near zero instead of a loss spike that the first epoch spends undoing.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.001)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    @staticmethod
    def _transition(previous: Sequence[int], current: Sequence[int]) -> nn.ModuleList:
        """Existing branches: 3x3 conv + BN + ReLU where the width changes; the new branch: a strided
        3x3 conv from the lowest-resolution branch."""
        layers = []
        for i, c in enumerate(current):
            if i < len(previous):
                layers.append(nn.Identity() if previous[i] == c else _conv_bn(previous[i], c, 3))
            else:
                layers.append(_conv_bn(previous[-1], c, 3, 2))
        return nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer1(self.stem(x))
        xs = [x]
        for transition, stage in zip(self.transitions, self.stages):
            # the new branch comes from the last (lowest-resolution) one; the others pass through
            xs = [t(xs[i] if i < len(xs) else xs[-1]) for i, t in enumerate(transition)]
            xs = stage(xs)
        return self.final_layer(xs[0])
