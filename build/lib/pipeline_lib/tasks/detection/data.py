"""YOLO-format detection data for training: load, augment (mosaic + transforms.v2), collate.

    index = index_yolo_dataset("data/shapes/data.yaml")        # yolo_format: UserError names file:line
    ds = YoloDataset(index["splits"]["train"], imgsz=128, augment=DEFAULT_AUGMENT, seed=0)
    batch = collate([ds[0], ds[1]])                              # images (2,3,128,128), targets (N,6)
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.ops import box_convert
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

__all__ = ["DEFAULT_AUGMENT", "YoloDataset", "collate", "scale_boxes_to_original"]

DEFAULT_AUGMENT = {"mosaic": 1.0, "degrees": 0.0, "translate": 0.1, "scale": 0.5, "shear": 0.0,
                   "fliplr": 0.5, "hsv_h": 0.015, "hsv_s": 0.7, "hsv_v": 0.4}
PAD = 114  # YOLOv5's grey for letterbox borders and mosaic background


class YoloDataset(Dataset):
    """Images and boxes at `imgsz`×`imgsz`: letterboxed for eval, mosaic + random affine + colour for training.

    A sample depends only on (seed, epoch, index) — not on worker count or call order — because
    each __getitem__ runs under its own forked, reseeded RNG. The engine calls set_epoch.
    """

    def __init__(self, items: list[dict], imgsz: int, augment: dict | None = None, seed: int = 0,
                 cache_bytes: int = 2 << 30):
        self.items, self.imgsz, self.seed, self.epoch = items, imgsz, seed, 0
        # Decoded images stay in RAM when they fit in `cache_bytes` (YOLOv5's --cache ram): loaded
        # here, before DataLoader workers fork, so every worker shares one copy.
        fits = 3 * imgsz * imgsz * len(items) <= cache_bytes
        self.cache = [self._read(i) for i in range(len(items))] if fits else None
        self.augment = None if augment is None else {**DEFAULT_AUGMENT, **augment}
        if self.augment is not None:
            a = self.augment
            self.affine = v2.RandomAffine(degrees=a["degrees"], translate=(a["translate"], a["translate"]),
                                          scale=(1 - a["scale"], 1 + a["scale"]), shear=a["shear"], fill=PAD)
            self.colour = v2.ColorJitter(brightness=a["hsv_v"], saturation=a["hsv_s"], hue=a["hsv_h"])

    def __len__(self) -> int:
        return len(self.items)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _load(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Image resized so its long side is imgsz (uint8 (3, h, w)) and its boxes in those pixels (n, 5)."""
        if self.cache is None:
            return self._read(i)
        image, labels = self.cache[i]
        return image, labels.clone()  # callers shift boxes in place

    def _read(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        item = self.items[i]
        with Image.open(item["image"]) as im:
            image = F.pil_to_tensor(ImageOps.exif_transpose(im).convert("RGB"))  # uint8 (3, h, w)
        h0, w0 = image.shape[-2:]
        r = self.imgsz / max(h0, w0)
        h, w = max(round(h0 * r), 1), max(round(w0 * r), 1)
        if (h, w) != (h0, w0):
            image = F.resize(image, [h, w], antialias=True)
        labels = torch.tensor(item["boxes"], dtype=torch.float32).reshape(-1, 5)
        xyxy = box_convert(labels[:, 1:], "cxcywh", "xyxy") * torch.tensor([w, h, w, h])
        return image, torch.cat((labels[:, :1], xyxy), 1)

    def _letterbox(self, i: int) -> tuple[torch.Tensor, torch.Tensor, tuple[float, float, float]]:
        image, labels = self._load(i)
        h, w = image.shape[-2:]
        pw, ph = (self.imgsz - w) / 2, (self.imgsz - h) / 2
        left, top = int(round(pw - 0.1)), int(round(ph - 0.1))
        image = F.pad(image, [left, top, self.imgsz - w - left, self.imgsz - h - top], fill=PAD)
        labels[:, 1:] += torch.tensor([left, top, left, top])
        ratio = self.imgsz / max(self.items[i]["width"], self.items[i]["height"])
        return image, labels, (ratio, float(left), float(top))

    def _mosaic(self, i: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Four images around a random centre of a 2s×2s canvas (YOLOv5), then the central s×s window."""
        s = self.imgsz
        xc, yc = (int(v) for v in rng.uniform(0.5 * s, 1.5 * s, size=2))
        canvas = torch.full((3, 2 * s, 2 * s), PAD, dtype=torch.uint8)
        parts = []
        for k, j in enumerate([i, *rng.integers(0, len(self.items), size=3)]):
            image, labels = self._load(int(j))
            h, w = image.shape[-2:]
            x0, y0 = (xc - w if k in (0, 2) else xc), (yc - h if k in (0, 1) else yc)
            cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x0 + w, 2 * s), min(y0 + h, 2 * s)
            canvas[:, cy0:cy1, cx0:cx1] = image[:, cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
            labels[:, 1:] += torch.tensor([x0, y0, x0, y0])
            parts.append(labels)
        return canvas, torch.cat(parts)

    def _augment(self, i: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        s, a = self.imgsz, self.augment
        if rng.random() < a["mosaic"]:
            image, labels = self._mosaic(i, rng)
        else:
            image, labels, _ = self._letterbox(i)
        size = image.shape[-1]
        boxes = tv_tensors.BoundingBoxes(labels[:, 1:], format="XYXY", canvas_size=(size, size))
        area0 = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        image, boxes = self.affine(tv_tensors.Image(image), boxes)
        off = (size - s) // 2  # central s×s window (the whole image when there is no mosaic)
        image = image[:, off:off + s, off:off + s]
        xyxy = (boxes.as_subclass(torch.Tensor) - off).clamp(0, s)
        w, h = xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1]
        # Keep boxes that stay > 2 px and keep a tenth of their area (YOLOv5's box_candidates);
        # affine scale is at least 1 - augment.scale, so a whole object always passes.
        keep = (w > 2) & (h > 2) & (w * h > 0.1 * area0)
        image = self.colour(image)
        labels = torch.cat((labels[keep, :1], xyxy[keep]), 1)
        if rng.random() < a["fliplr"]:
            image = F.horizontal_flip(image)
            labels[:, [1, 3]] = s - labels[:, [3, 1]]
        return image.as_subclass(torch.Tensor), labels

    def __getitem__(self, i: int) -> dict:
        item = self.items[i]
        if self.augment is None:
            image, labels, ratio_pad = self._letterbox(i)
        else:
            seed = int(np.random.SeedSequence([self.seed, self.epoch, i]).generate_state(1)[0])
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                image, labels = self._augment(i, np.random.default_rng(seed))
            ratio_pad = (1.0, 0.0, 0.0)
        s = self.imgsz
        boxes = box_convert(labels[:, 1:], "xyxy", "cxcywh") / s
        return {"image": image.float() / 255, "boxes": boxes.float(), "classes": labels[:, 0].long(),
                "image_id": item["image_id"], "orig_size": (item["height"], item["width"]), "ratio_pad": ratio_pad}


def collate(batch: list[dict]) -> dict:
    """Stack images; targets as YOLOv5 rows [batch_index, cls, cx, cy, w, h] (normalized)."""
    targets = [torch.cat((torch.full((len(b["classes"]), 1), float(k)), b["classes"][:, None].float(), b["boxes"]), 1)
               for k, b in enumerate(batch)]
    return {"images": torch.stack([b["image"] for b in batch]),
            "targets": torch.cat(targets) if targets else torch.zeros(0, 6),
            "image_ids": torch.tensor([b["image_id"] for b in batch], dtype=torch.int64),
            "orig_sizes": torch.tensor([b["orig_size"] for b in batch], dtype=torch.float32),
            "ratio_pad": torch.tensor([b["ratio_pad"] for b in batch], dtype=torch.float32)}


def scale_boxes_to_original(boxes: torch.Tensor, ratio_pad: torch.Tensor, orig_size) -> torch.Tensor:
    """Undo the letterbox: (n, 4) xyxy in network pixels -> original image pixels, clipped."""
    ratio, pad_w, pad_h = (float(v) for v in ratio_pad)
    h, w = (float(v) for v in orig_size)
    out = (boxes - torch.tensor([pad_w, pad_h, pad_w, pad_h], dtype=boxes.dtype)) / ratio
    return torch.stack((out[:, 0].clamp(0, w), out[:, 1].clamp(0, h), out[:, 2].clamp(0, w), out[:, 3].clamp(0, h)), 1)
