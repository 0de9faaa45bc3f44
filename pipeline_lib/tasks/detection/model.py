"""YOLOv5 v6.0-style detector written as explicit modules, plus NMS post-processing.

    model = YOLODetector(nc=3, scale="n").eval()
    dets = postprocess(model(torch.zeros(1, 3, 64, 64)))  # list of (n, 6) [x1, y1, x2, y2, score, cls]

Layer layout, widths and depths follow yolov5s.yaml (v6.0) scaled by depth/width multiples, so
parameter counts match the YOLOv5 n/s/m/l models. The forward pass avoids shape-keyed caches and
in-place tensor updates so that it traces (torch-pruning, ONNX) the same at every input size.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = [
    "ACTIVATIONS",
    "ANCHORS",
    "SCALES",
    "STRIDES",
    "C3",
    "SPPF",
    "Bottleneck",
    "Conv",
    "Detect",
    "YOLODetector",
    "postprocess",
]

# (depth_multiple, width_multiple) of the YOLOv5 model sizes.
SCALES: dict[str, tuple[float, float]] = {"n": (0.33, 0.25), "s": (0.33, 0.50), "m": (0.67, 0.75), "l": (1.0, 1.0)}
STRIDES = (8, 16, 32)
# Default COCO anchors in input pixels, (w, h) pairs, one row per output level P3/P4/P5.
ANCHORS = [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]]
# The activation after every conv. SiLU is YOLOv5's (v4.0+); ReLU is what INT8 runtimes fuse into
# the integer convolution, while SiLU stays a float op between quantize/dequantize pairs
# (measured in docs/EXPORT.md); LeakyReLU(0.1) is YOLOv5's before v4.0; HardSwish is SiLU's
# piecewise-linear stand-in (MobileNetV3). Not in-place: keeps autograd and fx tracing simple for the pruner.
ACTIVATIONS = {"silu": nn.SiLU, "relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(0.1), "hardswish": nn.Hardswish}


def _make_divisible(x: float, divisor: int = 8) -> int:
    return math.ceil(x / divisor) * divisor


class Conv(nn.Module):
    """Conv2d (no bias) -> BatchNorm2d -> SiLU with 'same' padding: ``Conv(3, 16, k=3, s=2)(x)``.

    YOLODetector swaps `act` for the configured activation after building.
    """

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, p: int | None = None):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, k // 2 if p is None else p, bias=False)
        self.bn = nn.BatchNorm2d(c2, eps=1e-3, momentum=0.03)  # YOLOv5's BN settings
        self.act = nn.SiLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    """1x1 -> 3x3 conv with an optional residual: ``Bottleneck(32, 32, shortcut=True)(x)``."""

    def __init__(self, c1: int, c2: int, shortcut: bool = True, e: float = 1.0):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c_, c2, 3, 1)
        self.add = shortcut and c1 == c2

    def forward(self, x: Tensor) -> Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C3(nn.Module):
    """CSP block with 3 convs and n bottlenecks: ``C3(64, 64, n=1, shortcut=False)(x)``."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, e: float = 0.5):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c1, c_, 1, 1)
        self.cv3 = Conv(2 * c_, c2, 1, 1)
        self.m = nn.Sequential(*(Bottleneck(c_, c_, shortcut, e=1.0) for _ in range(n)))

    def forward(self, x: Tensor) -> Tensor:
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


class SPPF(nn.Module):
    """Fast spatial pyramid pooling (three chained k x k max-pools): ``SPPF(256, 256, k=5)(x)``."""

    def __init__(self, c1: int, c2: int, k: int = 5):
        super().__init__()
        c_ = c1 // 2
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c_ * 4, c2, 1, 1)
        self.m = nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2)

    def forward(self, x: Tensor) -> Tensor:
        x = self.cv1(x)
        y1 = self.m(x)
        y2 = self.m(y1)
        return self.cv2(torch.cat((x, y1, y2, self.m(y2)), 1))


class Detect(nn.Module):
    """Per-level 1x1 output convs and the YOLOv5 v6 box decode: ``Detect(3, ANCHORS, (64, 128, 256))``.

    Buffers: ``anchors`` (nl, na, 2) in grid units of each level (pixels / stride, as YOLOv5 keeps
    them after check_anchor_order) and ``stride`` (nl,).
    """

    def __init__(self, nc: int, anchors: list[list[float]], ch: tuple[int, ...], strides: tuple[int, ...] = STRIDES):
        super().__init__()
        self.nc = nc
        self.no = nc + 5  # outputs per anchor: x, y, w, h, obj, classes
        self.nl = len(anchors)
        self.na = len(anchors[0]) // 2
        stride = torch.tensor(strides, dtype=torch.float32)
        self.register_buffer("stride", stride, persistent=False)  # fixed by the architecture
        self.register_buffer("anchors", torch.tensor(anchors, dtype=torch.float32).view(self.nl, -1, 2) / stride.view(-1, 1, 1))
        self.m = nn.ModuleList(nn.Conv2d(c, self.no * self.na, 1) for c in ch)
        self._initialize_biases()

    @torch.no_grad()
    def _initialize_biases(self) -> None:
        # Prior of ~8 objects per 640px image and 0.6 / nc class probability (YOLOv5, arXiv:1708.02002 3.3).
        for conv, s in zip(self.m, self.stride.tolist()):
            b = conv.bias.view(self.na, -1)
            b[:, 4] += math.log(8 / (640 / s) ** 2)
            b[:, 5:] += math.log(0.6 / (self.nc - 0.99))

    def forward(self, xs: list[Tensor]) -> list[Tensor] | Tensor:
        outs = []
        for i, conv in enumerate(self.m):
            x = conv(xs[i])
            bs, _, ny, nx = x.shape
            outs.append(x.view(bs, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous())  # (B, na, H, W, 5+nc)
        return outs if self.training else self._decode(outs)

    def _decode(self, outs: list[Tensor]) -> Tensor:
        """YOLOv5 v6 decode of all levels at once -> (B, N, 5+nc): xywh in input pixels, sigmoid scores.

        xy = (sig*2 - 0.5 + cell) * stride and wh = (sig*2)^2 * anchor, written as sig*a + b and
        sig*sig*c with per-row constants a, b, c, so the exported graph has one small op per step
        instead of one per level with broadcasts (ORT's slow path on tiny tensors). The grid comes
        from the tensors' own shapes: it traces at any input size, with no cache.
        """
        scale, offset, anchor = [], [], []
        for i, x in enumerate(outs):
            _, _, ny, nx, _ = x.shape
            gy, gx = torch.meshgrid(torch.arange(ny, device=x.device, dtype=x.dtype),
                                    torch.arange(nx, device=x.device, dtype=x.dtype), indexing="ij")
            cells = torch.stack((gx, gy), -1).view(1, ny * nx, 2).expand(self.na, -1, -1)  # (na, H*W, 2)
            stride = self.stride[i].to(x.dtype)
            scale.append(torch.full_like(cells, 2.0) * stride)
            offset.append((cells - 0.5) * stride)
            anchor.append((self.anchors[i] * stride * 4).to(x.dtype).view(self.na, 1, 2).expand_as(cells))
        scale, offset, anchor = (torch.cat([t.reshape(-1, 2) for t in ts]).unsqueeze(0) for ts in (scale, offset, anchor))
        y = torch.cat([x.view(x.shape[0], -1, self.no) for x in outs], 1).sigmoid()  # (B, N, 5+nc)
        xy, wh, conf = y.split((2, 2, self.nc + 1), 2)
        return torch.cat((xy * scale + offset, wh * wh * anchor, conf), 2)


class YOLODetector(nn.Module):
    """YOLOv5 v6.0 detector: ``YOLODetector(nc=80, scale="s")(torch.zeros(1, 3, 640, 640))``.

    Training mode returns 3 raw tensors (B, na, H_i, W_i, 5+nc) for strides 8/16/32; eval mode
    returns one decoded tensor (B, N, 5+nc): xywh in input pixels, sigmoid obj and class scores.
    ``shortcut`` toggles the residuals of the backbone C3 blocks (the head's C3 never have them);
    ``act`` names the activation after every conv (see ACTIVATIONS).
    """

    def __init__(
        self,
        nc: int,
        scale: str = "n",
        anchors: list[list[float]] | None = None,
        depth_multiple: float | None = None,
        width_multiple: float | None = None,
        shortcut: bool = True,
        act: str = "silu",
    ):
        super().__init__()
        if scale not in SCALES:
            raise ValueError(f"scale={scale!r}: expected one of {sorted(SCALES)}")
        gd, gw = SCALES[scale]
        gd = gd if depth_multiple is None else depth_multiple
        gw = gw if width_multiple is None else width_multiple
        self.nc = nc

        def ch(c: int) -> int:
            return _make_divisible(c * gw)

        def n(k: int) -> int:
            return max(round(k * gd), 1)

        c64, c128, c256, c512, c1024 = (ch(c) for c in (64, 128, 256, 512, 1024))
        # Backbone (CSPDarknet53 + SPPF).
        self.stem = Conv(3, c64, 6, 2, 2)  # P1/2
        self.stage2 = nn.Sequential(Conv(c64, c128, 3, 2), C3(c128, c128, n(3), shortcut))  # P2/4
        self.stage3 = nn.Sequential(Conv(c128, c256, 3, 2), C3(c256, c256, n(6), shortcut))  # P3/8
        self.stage4 = nn.Sequential(Conv(c256, c512, 3, 2), C3(c512, c512, n(9), shortcut))  # P4/16
        self.stage5 = nn.Sequential(Conv(c512, c1024, 3, 2), C3(c1024, c1024, n(3), shortcut))  # P5/32
        self.sppf = SPPF(c1024, c1024, 5)
        # PAN head: top-down path then bottom-up path.
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.lateral5 = Conv(c1024, c512, 1, 1)
        self.td_p4 = C3(2 * c512, c512, n(3), False)
        self.lateral4 = Conv(c512, c256, 1, 1)
        self.out_p3 = C3(2 * c256, c256, n(3), False)
        self.down_p3 = Conv(c256, c256, 3, 2)
        self.out_p4 = C3(2 * c256, c512, n(3), False)
        self.down_p4 = Conv(c512, c512, 3, 2)
        self.out_p5 = C3(2 * c512, c1024, n(3), False)
        self.detect = Detect(nc, anchors or ANCHORS, (c256, c512, c1024))
        self.set_activation(act)

    def set_activation(self, act: str) -> "YOLODetector":
        """`act` after every conv, in place (an activation holds no weights); returns the model."""
        if act not in ACTIVATIONS:
            raise ValueError(f"act={act!r}: expected one of {sorted(ACTIVATIONS)}")
        for m in self.modules():
            if isinstance(m, Conv):
                m.act = ACTIVATIONS[act]()
        return self

    @property
    def stride(self) -> Tensor:
        """Output strides, tensor([8., 16., 32.]) (the Detect buffer)."""
        return self.detect.stride

    def keep_width_modules(self) -> list[nn.Module]:
        """Modules whose output width the pruner must keep: the three 1x1 output convs."""
        return list(self.detect.m)

    def forward(self, x: Tensor) -> list[Tensor] | Tensor:
        p3 = self.stage3(self.stage2(self.stem(x)))
        p4 = self.stage4(p3)
        l5 = self.lateral5(self.sppf(self.stage5(p4)))  # (B, c512, H/32, W/32)
        l4 = self.lateral4(self.td_p4(torch.cat((self.upsample(l5), p4), 1)))  # (B, c256, H/16, W/16)
        o3 = self.out_p3(torch.cat((self.upsample(l4), p3), 1))  # (B, c256, H/8, W/8)
        o4 = self.out_p4(torch.cat((self.down_p3(o3), l4), 1))  # (B, c512, H/16, W/16)
        o5 = self.out_p5(torch.cat((self.down_p4(o4), l5), 1))  # (B, c1024, H/32, W/32)
        return self.detect([o3, o4, o5])


def postprocess(
    decoded: Tensor,
    conf_thres: float = 0.001,
    iou_thres: float = 0.6,
    max_det: int = 300,
    multi_label: bool = False,
    max_nms: int = 30000,
) -> list[Tensor]:
    """Class-aware NMS per image: ``postprocess(model.eval()(x))[0]`` -> (n, 6) [x1, y1, x2, y2, score, cls].

    score = obj * class probability; boxes below ``conf_thres`` are dropped, at most ``max_nms``
    best candidates enter NMS and ``max_det`` survive. ``multi_label`` keeps every class above the
    threshold for a box instead of the best one.
    """
    import torchvision  # here: building and timing the network needs none (~1.5 s with torch._dynamo)

    out = []
    for x in decoded:  # (N, 5+nc)
        x = x[x[:, 4] > conf_thres]
        boxes = torchvision.ops.box_convert(x[:, :4], "cxcywh", "xyxy")
        scores = x[:, 5:] * x[:, 4:5]  # (n, nc)
        if multi_label:
            i, j = (scores > conf_thres).nonzero(as_tuple=True)
            boxes, score, cls = boxes[i], scores[i, j], j
        else:
            score, cls = scores.max(1)
            keep = score > conf_thres
            boxes, score, cls = boxes[keep], score[keep], cls[keep]
        order = score.argsort(descending=True)[:max_nms]
        boxes, score, cls = boxes[order], score[order], cls[order]
        keep = torchvision.ops.batched_nms(boxes, score, cls, iou_thres)[:max_det]
        out.append(torch.cat((boxes[keep], score[keep, None], cls[keep, None].to(boxes.dtype)), 1))
    return out
