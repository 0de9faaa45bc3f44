"""Heatmap targets, their decoding, and the flip test's flip-back.

    maps, weight = gaussian_targets(joints, visible, size=(32, 24), sigma=2.0)   # (B, K, 32, 24), (B, K)
    coords, maxvals = decode(maps.numpy())             # (B, K, 2) heatmap coordinates, (B, K) peak values
    back = flip_back(model(images.flip(3)), pairs)     # the flipped input's maps, in the original's frame

Heatmap coordinates are continuous like the crop's (`transforms`): heatmap pixel (j, i) covers
[j, j + 1) x [i, i + 1), and a crop point u lies at u / stride. A target's Gaussian sits at the
keypoint's exact sub-pixel position, so decoding (argmax plus a quarter pixel towards the larger
neighbour, as in the official HRNet) recovers a planted peak within 0.25 heatmap pixels, and the
flip-back needs no pixel shift: the official one-pixel shift offsets the bias of its integer
pixel convention, which this convention does not have.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

__all__ = ["gaussian_targets", "decode", "flip_back", "flip_order"]


def gaussian_targets(joints: torch.Tensor, visible: torch.Tensor, size: tuple[int, int],
                     sigma: float = 2.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Unnormalised Gaussians (peak 1) at `joints` (B, K, 2), in heatmap coordinates, on (h, w) maps.

    The weight is 1 for labelled keypoints (visible > 0) and 0 for unlabelled ones and for those
    whose Gaussian lies wholly outside the map (more than 3 sigma off it), as in the official code.
    """
    h, w = size
    centers = joints.float() - 0.5  # pixel centres sit at index + 0.5
    cx, cy = centers[..., 0:1], centers[..., 1:2]
    gx = torch.exp(-(torch.arange(w, device=joints.device) - cx) ** 2 / (2 * sigma**2))  # (B, K, w)
    gy = torch.exp(-(torch.arange(h, device=joints.device) - cy) ** 2 / (2 * sigma**2))  # (B, K, h)
    cx, cy = cx[..., 0], cy[..., 0]
    inside = (cx > -3 * sigma) & (cx < w - 1 + 3 * sigma) & (cy > -3 * sigma) & (cy < h - 1 + 3 * sigma)
    weight = ((visible > 0) & inside).float()
    maps = gy[..., :, None] * gx[..., None, :] * weight[..., None, None]
    return maps, weight


def decode(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(coords (B, K, 2), maxvals (B, K)) of (B, K, h, w) maps: the argmax, moved a quarter pixel
    towards the larger neighbour along each axis where both neighbours exist."""
    b, k, h, w = heatmaps.shape
    flat = heatmaps.reshape(b * k, h * w)
    idx = flat.argmax(-1)
    maxvals = flat[np.arange(b * k), idx]
    px, py = idx % w, idx // w
    hm = heatmaps.reshape(b * k, h, w)
    n = np.arange(b * k)
    dx, dy = np.zeros(b * k), np.zeros(b * k)
    ix, iy = (px > 0) & (px < w - 1), (py > 0) & (py < h - 1)
    dx[ix] = np.sign(hm[n[ix], py[ix], px[ix] + 1] - hm[n[ix], py[ix], px[ix] - 1])
    dy[iy] = np.sign(hm[n[iy], py[iy] + 1, px[iy]] - hm[n[iy], py[iy] - 1, px[iy]])
    coords = np.stack([px + 0.5 + 0.25 * dx, py + 0.5 + 0.25 * dy], axis=-1)
    return coords.reshape(b, k, 2), maxvals.reshape(b, k)


def flip_order(num_joints: int, flip_pairs: Sequence[Sequence[int]]) -> list[int]:
    """Channel order that swaps every left/right pair: a mirrored person's left is its right."""
    order = list(range(num_joints))
    for a, b in flip_pairs:
        order[a], order[b] = b, a
    return order


def flip_back(heatmaps: torch.Tensor, flip_pairs: Sequence[Sequence[int]]) -> torch.Tensor:
    """Maps predicted on left-right flipped crops, mirrored back and with left/right channels swapped."""
    return heatmaps.flip(3)[:, flip_order(heatmaps.shape[1], flip_pairs)]
