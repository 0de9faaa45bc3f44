"""Top-down crop geometry: a person box to a fixed-aspect crop, its affine, and keypoints through it.

    center, size = box_to_crop(bbox=[40, 20, 30, 90], aspect=96 / 128)    # 1.25x the box, at the input's aspect
    A = crop_affine(center, size, out_size=(128, 96), rotation=15, flip=True)  # image -> crop (2x3)
    crop = warp(image, A, (128, 96))                    # uint8 (128, 96, 3)
    pts = apply_affine(A, keypoints[:, :2])             # the same points in the crop

All coordinates are continuous: pixel (col, row) covers [col, col + 1) x [row, row + 1), so its
centre is (col + 0.5, row + 0.5). COCO boxes and keypoints, PIL's affine warp and the heatmap
mapping (`heatmaps.to_heatmap`) all use this convention, which makes every mapping here exact:
a flip is x -> W - x, a resize is a plain scale, and nothing needs the half- or one-pixel
corrections of the official HRNet code (whose integer-pixel convention is biased; Huang et al.,
"The Devil is in the Details: Delving into Unbiased Data Processing", CVPR 2020).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from PIL import Image

__all__ = ["PADDING", "box_to_crop", "crop_affine", "invert_affine", "apply_affine", "warp"]

PADDING = 1.25  # the crop is this much larger than the person box (the official HRNet setting)


def box_to_crop(bbox: Sequence[float], aspect: float, padding: float = PADDING) -> tuple[np.ndarray, np.ndarray]:
    """(centre, (w, h)) of the crop around COCO box [x, y, w, h]: widened or heightened to `aspect` (w / h), padded."""
    x, y, w, h = (float(v) for v in bbox)
    center = np.array([x + w / 2, y + h / 2])
    if w > aspect * h:
        h = w / aspect
    else:
        w = h * aspect
    return center, np.array([w, h]) * padding


def crop_affine(center: np.ndarray, size: np.ndarray, out_size: tuple[int, int], rotation: float = 0.0,
                flip: bool = False) -> np.ndarray:
    """2x3 matrix taking image coordinates to crop coordinates.

    The crop's `size` (w, h) around `center` fills `out_size` (h, w) after rotating the content by
    `rotation` degrees (counter-clockwise on screen); `flip` mirrors the crop left-right.
    """
    out_h, out_w = out_size
    scale = out_w / size[0]  # size has the output's aspect, so one scale serves both axes
    t = math.radians(rotation)
    # y points down, so a counter-clockwise turn on screen is a clockwise turn in these axes
    rot = np.array([[math.cos(t), math.sin(t)], [-math.sin(t), math.cos(t)]]) * scale
    if flip:
        rot[0] = -rot[0]
    shift = np.array([out_w / 2, out_h / 2]) - rot @ center
    return np.hstack([rot, shift[:, None]])


def invert_affine(A: np.ndarray) -> np.ndarray:
    inv = np.linalg.inv(A[:, :2])
    return np.hstack([inv, -inv @ A[:, 2:]])


def apply_affine(A: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(N, 2) points through the 2x3 matrix A."""
    return points @ A[:, :2].T + A[:, 2]


def warp(image: Image.Image, A: np.ndarray, out_size: tuple[int, int]) -> np.ndarray:
    """The crop `A` defines, bilinear, zero outside the image: uint8 (h, w, 3)."""
    inv = invert_affine(A)  # PIL asks, for each output pixel, where to read in the input
    out = image.transform((out_size[1], out_size[0]), Image.AFFINE, tuple(inv.flatten()), resample=Image.BILINEAR)
    return np.array(out)  # a writable copy: torch.from_numpy wants one
