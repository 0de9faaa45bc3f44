"""Detections matched to ground truth at one IoU, for the P/R/F1-against-confidence curves and the
confusion matrix of the report (ultralytics' `ap_per_class` curves and `ConfusionMatrix`, written
here over COCO-format files: the ground truth `evaluate` scored against and its detections).

    curves = confidence_curves(gt, detections, nc)        # {"confidence", "precision", "recall", "f1"}: (nc, 1000)
    matrix = confusion_matrix(gt, detections, nc)         # (nc + 1, nc + 1): rows predicted, columns true; last: background

Both match at IoU 0.5. The curves match within a class, greedily by score (each box to the free
ground-truth box it overlaps most, as COCOeval); the matrix matches across classes at the deployment
threshold 0.25, each pair of highest IoU first, as ultralytics' ConfusionMatrix does.
"""
from __future__ import annotations

import numpy as np
import torch
from torchvision.ops import box_convert, box_iou

__all__ = ["IOU", "CONF", "confidence_curves", "confusion_matrix"]

IOU = 0.5  # a detection matches a ground-truth box it overlaps at least this much
CONF = 0.25  # the confusion matrix's score threshold: what `predict` keeps by default
GRID = np.linspace(0, 1, 1000)  # the confidence axis of the curves


def _by_image(records: list[dict]) -> dict[int, list[dict]]:
    grouped = {}
    for r in records:
        grouped.setdefault(r["image_id"], []).append(r)
    return grouped


def _iou(a: list[dict], b: list[dict]) -> np.ndarray:
    """IoU of every box of `a` with every box of `b` (COCO [x, y, w, h] boxes)."""
    if not a or not b:
        return np.zeros((len(a), len(b)))
    xyxy = [box_convert(torch.tensor([r["bbox"] for r in rs], dtype=torch.float64), "xywh", "xyxy") for rs in (a, b)]
    return box_iou(*xyxy).numpy()


def _true_positives(gt: dict, detections: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each detection's (score, class, matched) after per-image, per-class greedy matching by score."""
    truth = _by_image([a for a in gt["annotations"] if not a.get("iscrowd", 0)])
    scores, classes, hits = [], [], []
    for image_id, dets in _by_image(detections).items():
        for c in {d["category_id"] for d in dets}:
            mine = sorted((d for d in dets if d["category_id"] == c), key=lambda d: -d["score"])
            boxes = [a for a in truth.get(image_id, []) if a["category_id"] == c]
            iou, free = _iou(mine, boxes), np.ones(len(boxes), dtype=bool)
            for i, d in enumerate(mine):
                overlap = np.where(free, iou[i], -1.0) if len(boxes) else np.array([-1.0])
                j = int(overlap.argmax())
                hit = bool(overlap[j] >= IOU)
                if hit:
                    free[j] = False
                scores.append(d["score"]), classes.append(c), hits.append(hit)
    return np.array(scores, float), np.array(classes, int), np.array(hits, bool)


def confidence_curves(gt: dict, detections: list[dict], nc: int) -> dict[str, np.ndarray]:
    """Precision, recall and F1 per class of the detections scoring at least each confidence of a
    1000-point grid (a class without ground truth: NaN rows); "count": ground-truth boxes per class."""
    scores, classes, hits = _true_positives(gt, detections)
    count = np.bincount([a["category_id"] for a in gt["annotations"] if not a.get("iscrowd", 0)], minlength=nc)[:nc]
    precision, recall = np.full((nc, len(GRID)), np.nan), np.full((nc, len(GRID)), np.nan)
    for c in range(nc):
        if count[c] == 0:
            continue
        mine = classes == c
        order = np.argsort(-scores[mine], kind="stable")
        conf, tp = scores[mine][order], np.cumsum(hits[mine][order])
        kept = np.searchsorted(-conf, -GRID, side="right")  # detections scoring >= each grid confidence
        tp_at = np.where(kept > 0, tp[np.maximum(kept - 1, 0)] if len(tp) else 0, 0)
        recall[c] = tp_at / count[c]
        precision[c] = np.where(kept > 0, tp_at / np.maximum(kept, 1), 1.0)  # nothing kept: precision 1, as ultralytics
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-16)
    return {"confidence": GRID, "precision": precision, "recall": recall, "f1": f1, "count": count}


def confusion_matrix(gt: dict, detections: list[dict], nc: int) -> np.ndarray:
    """Counts (nc + 1, nc + 1): [predicted class, true class], background last (a missed box in the
    last row, a detection of nothing in the last column), for detections scoring at least CONF."""
    matrix = np.zeros((nc + 1, nc + 1), dtype=int)
    truth = _by_image([a for a in gt["annotations"] if not a.get("iscrowd", 0)])
    found = _by_image([d for d in detections if d["score"] >= CONF])
    for image_id in {im["id"] for im in gt["images"]}:
        boxes, dets = truth.get(image_id, []), found.get(image_id, [])
        iou = _iou(boxes, dets)
        pairs = sorted(zip(*np.nonzero(iou >= IOU)), key=lambda p: -iou[p])
        used_gt, used_det = set(), set()
        for g, d in pairs:
            if g not in used_gt and d not in used_det:
                used_gt.add(g), used_det.add(d)
                matrix[dets[d]["category_id"], boxes[g]["category_id"]] += 1
        for g in set(range(len(boxes))) - used_gt:
            matrix[nc, boxes[g]["category_id"]] += 1
        for d in set(range(len(dets))) - used_det:
            matrix[dets[d]["category_id"], nc] += 1
    return matrix
