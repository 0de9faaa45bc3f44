"""YOLOv5 detection loss (CIoU box, IoU-target objectness, BCE class) with YOLOv5's target assignment.

    loss, items = DetectionLoss(model)(model.train()(images), targets)  # targets (N, 6) [img, cls, cx, cy, w, h]

Targets are normalized to [0, 1]; each is matched to every anchor whose width/height ratio is
within ``anchor_t`` and assigned to its own grid cell plus the two nearest neighbour cells.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import box_convert, complete_box_iou_loss

__all__ = ["DEFAULT_HYP", "DetectionLoss", "distill_loss"]

DEFAULT_HYP: dict = {
    "box": 0.05,
    "obj": 1.0,
    "cls": 0.5,
    "anchor_t": 4.0,
    "cls_pw": 1.0,
    "obj_pw": 1.0,
    "label_smoothing": 0.0,
    "balance": [4.0, 1.0, 0.4],  # objectness weight of P3, P4, P5
}

# Cell offsets (in cells, x then y) of the own cell and the 4 neighbours; a target takes the two
# neighbours its centre is closest to (YOLOv5 v6 build_targets, g=0.5).
_G = 0.5
_OFFSETS = torch.tensor([[0, 0], [1, 0], [0, 1], [-1, 0], [0, -1]], dtype=torch.float32) * _G


class DetectionLoss:
    """Callable YOLOv5 loss bound to a ``YOLODetector``: ``DetectionLoss(model, {"box": 0.05})``.

    ``hyp`` overrides keys of ``DEFAULT_HYP`` (other keys are ignored). Box/cls/obj gains are scaled
    as YOLOv5's train.py does: box *3/nl, cls *nc/80*3/nl, obj *(imgsz/640)^2*3/nl, where imgsz is
    the ``imgsz`` argument or, if None, the longer input side seen by each call.
    Returns ``(loss * batch_size, {"box", "obj", "cls"})`` with the items as floats.
    """

    def __init__(self, model: nn.Module, hyp: dict | None = None, imgsz: int | None = None):
        self.detect = getattr(model, "module", model).detect  # read anchors at call time: follows .to(device)
        self.hyp = {**DEFAULT_HYP, **{k: v for k, v in (hyp or {}).items() if k in DEFAULT_HYP}}
        self.imgsz = imgsz
        self.nc, self.na, self.nl = self.detect.nc, self.detect.na, self.detect.nl
        if len(self.hyp["balance"]) != self.nl:
            raise ValueError(f"hyp['balance'] has {len(self.hyp['balance'])} entries, the model has {self.nl} levels")

    def __call__(self, preds: list[Tensor], targets: Tensor) -> tuple[Tensor, dict[str, float]]:
        h = self.hyp
        device = preds[0].device
        targets = targets.to(device=device, dtype=torch.float32)  # grid coordinates need fp32 even under AMP
        imgsz = self.imgsz or max(preds[0].shape[2:4]) * int(self.detect.stride[0])
        gain = 3 / self.nl
        box_gain = h["box"] * gain
        cls_gain = h["cls"] * self.nc / 80 * gain
        obj_gain = h["obj"] * (imgsz / 640) ** 2 * gain
        cls_pw = torch.tensor([h["cls_pw"]], device=device)
        obj_pw = torch.tensor([h["obj_pw"]], device=device)
        cp, cn = 1.0 - 0.5 * h["label_smoothing"], 0.5 * h["label_smoothing"]  # positive / negative class targets

        lbox, lobj, lcls = (torch.zeros((), device=device) for _ in range(3))
        for i, (pi, (b, a, gj, gi, tbox, tcls)) in enumerate(zip(preds, self.build_targets(preds, targets))):
            tobj = torch.zeros(pi.shape[:4], dtype=pi.dtype, device=device)  # (B, na, H, W)
            if b.numel():
                pxy, pwh, _, pcls = pi[b, a, gj, gi].split((2, 2, 1, self.nc), 1)  # matched predictions
                pxy = pxy.sigmoid() * 2 - 0.5  # offset from the cell corner, in cells
                pwh = (pwh.sigmoid() * 2) ** 2 * self.detect.anchors[i][a]
                # torchvision's CIoU loss is 1 - CIoU on xyxy boxes (aspect term alpha detached, as YOLOv5).
                pbox = box_convert(torch.cat((pxy, pwh), 1), "cxcywh", "xyxy")
                iou = 1.0 - complete_box_iou_loss(pbox, box_convert(tbox, "cxcywh", "xyxy"), reduction="none")
                lbox = lbox + (1.0 - iou).mean()
                tobj = tobj.index_put((b, a, gj, gi), iou.detach().clamp(0).to(tobj.dtype))  # gr = 1.0
                if self.nc > 1:  # a single class is fully described by objectness
                    t = torch.full_like(pcls, cn)
                    t[torch.arange(len(tcls), device=device), tcls] = cp
                    lcls = lcls + F.binary_cross_entropy_with_logits(pcls, t, pos_weight=cls_pw)
            lobj = lobj + F.binary_cross_entropy_with_logits(pi[..., 4], tobj, pos_weight=obj_pw) * h["balance"][i]

        lbox, lobj, lcls = lbox * box_gain, lobj * obj_gain, lcls * cls_gain
        loss = (lbox + lobj + lcls) * preds[0].shape[0]
        return loss, {"box": lbox.item(), "obj": lobj.item(), "cls": lcls.item()}

    @torch.no_grad()
    def build_targets(self, preds: list[Tensor], targets: Tensor) -> list[tuple[Tensor, ...]]:
        """Per level: (img, anchor, gj, gi) indices, target boxes (cx, cy, w, h) relative to the cell, classes."""
        device = targets.device
        nt = targets.shape[0]
        ai = torch.arange(self.na, device=device, dtype=targets.dtype).view(self.na, 1).expand(self.na, nt)
        targets = torch.cat((targets.expand(self.na, nt, 6), ai[..., None]), 2)  # (na, nt, 7): ..., anchor idx
        offsets_all = _OFFSETS.to(device=device, dtype=targets.dtype)
        out = []
        for i, pi in enumerate(preds):
            ny, nx = pi.shape[2:4]
            anchors = self.detect.anchors[i]  # (na, 2) in cells
            scale = torch.tensor([1, 1, nx, ny, nx, ny, 1], device=device, dtype=targets.dtype)
            t = targets * scale  # boxes in grid cells of this level
            r = t[..., 4:6] / anchors[:, None]  # (na, nt, 2) wh ratio target / anchor
            t = t[torch.max(r, 1 / r).amax(2) < self.hyp["anchor_t"]]  # (m, 7)
            gxy = t[:, 2:4]
            gxi = gxy.new_tensor([nx, ny]) - gxy  # distance to the far border
            j, k = ((gxy % 1 < _G) & (gxy > 1)).T  # closer to the left / top neighbour
            l, m = ((gxi % 1 < _G) & (gxi > 1)).T  # closer to the right / bottom neighbour
            sel = torch.stack((torch.ones_like(j), j, k, l, m))  # (5, m)
            t = t.expand(5, -1, -1)[sel]
            offsets = offsets_all[:, None].expand(-1, len(gxy), -1)[sel]
            b, c = t[:, 0].long(), t[:, 1].long()
            gxy, gwh, a = t[:, 2:4], t[:, 4:6], t[:, 6].long()
            gi, gj = (gxy - offsets).long().unbind(1)
            gi, gj = gi.clamp(0, nx - 1), gj.clamp(0, ny - 1)
            tbox = torch.cat((gxy - torch.stack((gi, gj), 1), gwh), 1)  # centre relative to its cell, in cells
            out.append((b, a, gj, gi, tbox, c))
        return out


def _bernoulli_kl(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """Elementwise KL(teacher || student) of sigmoid outputs softened by `temperature`, times T²
    (Hinton et al. 2015: keeps the gradient's size independent of T); exactly 0 where they are equal."""
    s, t = student / temperature, teacher / temperature
    p = t.sigmoid()
    kl = p * (F.logsigmoid(t) - F.logsigmoid(s)) + (1 - p) * (F.logsigmoid(-t) - F.logsigmoid(-s))
    return kl * temperature ** 2


def distill_loss(student: list[Tensor], teacher: list[Tensor], temperature: float) -> Tensor:
    """Per image, averaged over levels: objectness as soft targets everywhere, and — weighted by the
    teacher's objectness, since a background cell's box and classes mean nothing — the class
    scores as soft targets and the squared difference of the sigmoid box outputs (the decode's
    inputs: bounded, unlike pixels). Inputs are the raw per-level maps (B, na, H, W, 5 + nc)."""
    total = torch.zeros((), device=student[0].device)
    for s, t in zip(student, teacher):
        s, t = s.float(), t.float()
        weight = t[..., 4].sigmoid()
        norm = weight.sum().clamp_min(1e-9)
        total = total + _bernoulli_kl(s[..., 4], t[..., 4], temperature).mean()
        box = (s[..., :4].sigmoid() - t[..., :4].sigmoid()).square().mean(-1)
        total = total + (weight * box).sum() / norm
        if s.shape[-1] > 6:  # a single class is fully described by objectness (as in the loss)
            cls = _bernoulli_kl(s[..., 5:], t[..., 5:], temperature).mean(-1)
            total = total + (weight * cls).sum() / norm
    return total / len(student)
