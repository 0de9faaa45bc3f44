"""Top-down person crops: one sample per person box, augmented for training.

    ds = PoseDataset(manifest["splits"]["train"], size=(128, 96), flip_pairs=manifest["flip_pairs"],
                     lower_body=lower_body(manifest["names"]), augment={"flip": 0.5, "rotation": 45}, seed=0)
    ds[0]   # {"images": (3, 128, 96) in [0, 1], "joints": (K, 2) heatmap coords, "visible": (K,), ...}

A crop is the person box widened to the input's aspect and padded 1.25x (`transforms`);
training draws the official HRNet augmentations: half-body crops, scale, rotation and a flip that
swaps the left/right keypoint pairs. Joints come in heatmap coordinates (crop / 4), and the
criterion renders their Gaussians. For evaluation a sample carries instead the affine from
heatmap back to image coordinates, the image id and the box score. A sample depends only on
(seed, epoch, index), never on worker count or order.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from .heatmaps import flip_order
from .transforms import apply_affine, box_to_crop, crop_affine, invert_affine, warp

__all__ = ["STRIDE", "DEFAULT_AUGMENT", "CACHE_BYTES", "lower_body", "PoseDataset"]

STRIDE = 4  # input pixels per heatmap pixel: HRNet predicts at a quarter of the input resolution
DEFAULT_AUGMENT = {"flip": 0.5, "rotation": 45.0, "rotation_prob": 0.6, "scale": 0.35, "half_body": 0.3,
                   "half_body_min_keypoints": 8}
CACHE_BYTES = 2 << 30  # decode each image once when the split's pixels fit in this many bytes
_LOWER = ("hip", "knee", "ankle", "foot", "heel", "toe")


def lower_body(names: Sequence[str]) -> list[int]:
    """Indices of lower-body keypoints (hips and below, by name); the rest count as upper body."""
    return [i for i, n in enumerate(names) if any(part in n.lower() for part in _LOWER)]


class PoseDataset(Dataset):
    def __init__(self, items: list[dict], size: tuple[int, int], flip_pairs: Sequence[Sequence[int]] = (),
                 lower: Sequence[int] = (), augment: dict | None = None, seed: int = 0):
        self.items, self.size, self.seed, self.epoch = items, tuple(size), seed, 0
        self.augment = None if augment is None else {**DEFAULT_AUGMENT, **augment}
        self.num_joints = len(items[0]["keypoints"]) // 3 if items else 0
        self.order = flip_order(self.num_joints, flip_pairs)
        self.lower = np.zeros(self.num_joints, bool)
        self.lower[list(lower)] = True
        pixels = sum(w * h * 3 for w, h in {it["image"]: it["size"] for it in items}.values())
        # Small splits are decoded once, here, before DataLoader workers fork and share the pages;
        # large ones (COCO itself) are read per sample.
        self.cache = {} if pixels <= CACHE_BYTES else None
        if self.cache is not None:
            for it in items:
                self._image(it["image"])

    def __len__(self) -> int:
        return len(self.items)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _image(self, path: str) -> Image.Image:
        if self.cache is not None and path in self.cache:
            return self.cache[path]
        with Image.open(path) as im:
            image = im.convert("RGB")
        if self.cache is not None:
            self.cache[path] = image
        return image

    def _half_body(self, rng: np.random.Generator, kps: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """A crop around the upper or the lower body's labelled keypoints (official: 1.5x their box)."""
        labelled = kps[:, 2] > 0
        upper, lower = labelled & ~self.lower, labelled & self.lower
        chosen = upper if (rng.random() < 0.5 and upper.sum() > 2) or lower.sum() < 2 else lower
        if chosen.sum() < 2:
            return None
        pts = kps[chosen, :2]
        lo, hi = pts.min(0), pts.max(0)
        return box_to_crop([*lo, *(hi - lo)], self.size[1] / self.size[0], padding=1.5)

    def __getitem__(self, i: int) -> dict:
        item = self.items[i]
        kps = np.asarray(item["keypoints"], dtype=np.float64).reshape(-1, 3)
        aspect = self.size[1] / self.size[0]
        center, size = box_to_crop(item["bbox"], aspect)
        rotation, flip = 0.0, False
        if self.augment is not None:
            a = self.augment
            rng = np.random.default_rng([self.seed, self.epoch, i])
            if (kps[:, 2] > 0).sum() > a["half_body_min_keypoints"] and rng.random() < a["half_body"]:
                center, size = self._half_body(rng, kps) or (center, size)
            size = size * np.clip(rng.normal() * a["scale"] + 1, 1 - a["scale"], 1 + a["scale"])
            if rng.random() < a["rotation_prob"]:
                rotation = float(np.clip(rng.normal() * a["rotation"], -2 * a["rotation"], 2 * a["rotation"]))
            flip = bool(rng.random() < a["flip"])
        A = crop_affine(center, size, self.size, rotation, flip)
        image = torch.from_numpy(warp(self._image(item["image"]), A, self.size)).permute(2, 0, 1).float() / 255
        sample = {"images": image, "index": i}
        if self.augment is None:
            # heatmap -> crop (x STRIDE) -> image: what evaluate needs to put predictions back
            back = invert_affine(A) @ np.diag([STRIDE, STRIDE, 1.0])
            sample.update({"inverse": torch.from_numpy(back), "image_id": item["image_id"],
                           "score": float(item.get("score", 1.0)), "area": float(item["bbox"][2] * item["bbox"][3])})
            return sample
        joints = apply_affine(A, kps[:, :2]) / STRIDE
        visible = kps[:, 2]
        if flip:  # the mirrored person's left keypoints are the right ones
            joints, visible = joints[self.order], visible[self.order]
        sample.update({"joints": torch.from_numpy(joints).float(), "visible": torch.from_numpy(visible).float()})
        return sample
