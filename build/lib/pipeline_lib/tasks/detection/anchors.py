"""Anchors fitted to the dataset (YOLOv5's autoanchor idea): k-means on box sizes at the train size.

    anchors = fit_anchors(items, imgsz=128)   # [[w, h, w, h, w, h]] x 3 for strides 8, 16, 32

COCO's anchors assume 640 px images; on small inputs most of them fit no object, and the loose
anchor_t matches then hand P5's coarse cells targets they cannot classify. Fitting anchors to the
data fixes that at no cost at inference.
"""
from __future__ import annotations

import numpy as np

__all__ = ["box_sizes", "fit_anchors"]


def box_sizes(items: list[dict], imgsz: int) -> np.ndarray:
    """(n, 2) box widths and heights in pixels after letterboxing each image to `imgsz`."""
    sizes = [[w * item["width"], h * item["height"]] for item in items for _, _, _, w, h in item["boxes"]]
    scale = [imgsz / max(item["width"], item["height"]) for item in items for _ in item["boxes"]]
    return np.asarray(sizes, dtype=np.float64).reshape(-1, 2) * np.asarray(scale).reshape(-1, 1)


def _iou_wh(wh: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """IoU of boxes and anchors sharing a centre: (n, k)."""
    inter = np.minimum(wh[:, None], anchors[None]).prod(2)
    return inter / (wh.prod(1)[:, None] + anchors.prod(1)[None] - inter)


def fit_anchors(items: list[dict], imgsz: int, n: int = 9, iters: int = 100) -> list[list[float]] | None:
    """k-means with 1 - IoU distance (YOLOv2), started at area quantiles so it is deterministic.

    Returns None when there are fewer boxes than anchors (the caller keeps its defaults).
    """
    wh = box_sizes(items, imgsz)
    wh = wh[(wh >= 2).all(1)]
    if len(wh) < n:
        return None
    order = np.argsort(wh.prod(1), kind="stable")
    anchors = wh[order[np.linspace(0, len(wh) - 1, n).round().astype(int)]].copy()
    for _ in range(iters):
        assign = _iou_wh(wh, anchors).argmax(1)
        updated = np.array([wh[assign == k].mean(0) if (assign == k).any() else anchors[k] for k in range(n)])
        if np.allclose(updated, anchors):
            break
        anchors = updated
    anchors = anchors[np.argsort(anchors.prod(1), kind="stable")]
    return np.round(anchors, 1).reshape(3, -1).tolist()
