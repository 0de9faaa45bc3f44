"""Detection metrics from pycocotools' COCOeval on COCO-format JSON — never a look-alike.

    metrics = coco_detection_metrics(gt_dict, [{"image_id": 1, "category_id": 0, "bbox": [x, y, w, h], "score": 0.9}])
    # {"mAP50_95": ..., "mAP50": ..., "precision": ..., "recall": ...}
"""
from __future__ import annotations

import contextlib
import copy
import io

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

__all__ = ["coco_eval", "coco_detection_metrics", "precision_recall_at_best_f1"]


def _quiet(fn, *args):
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress to stdout
        return fn(*args)


def coco_eval(gt: dict, detections: list[dict]) -> COCOeval | None:
    """COCOeval ("bbox") evaluated, accumulated and summarized; None without detections."""
    if not detections:
        return None
    coco_gt = COCO()
    coco_gt.dataset = copy.deepcopy(gt)
    _quiet(coco_gt.createIndex)
    coco_dt = _quiet(coco_gt.loadRes, copy.deepcopy(detections))
    ev = COCOeval(coco_gt, coco_dt, "bbox")
    for step in (ev.evaluate, ev.accumulate, ev.summarize):
        _quiet(step)
    return ev


def coco_detection_metrics(gt: dict, detections: list[dict]) -> dict[str, float]:
    """mAP50-95 and mAP50 are COCOeval's stats[0] and stats[1]; P and R see precision_recall_at_best_f1."""
    ev = coco_eval(gt, detections)
    if ev is None:
        return {"mAP50_95": 0.0, "mAP50": 0.0, "precision": 0.0, "recall": 0.0}
    precision, recall = precision_recall_at_best_f1(ev)
    return {"mAP50_95": max(float(ev.stats[0]), 0.0), "mAP50": max(float(ev.stats[1]), 0.0),
            "precision": precision, "recall": recall}


def precision_recall_at_best_f1(ev: COCOeval) -> tuple[float, float]:
    """Pooled precision and recall at IoU 0.5 at the score threshold that maximises F1.

    Uses COCOeval's own matches (evalImgs, area "all", largest maxDets), so a detection counts as a
    true positive exactly when COCOeval would count it — the YOLOv5 P/R idea on COCO's matching.
    """
    area_all, max_det = ev.params.areaRng[0], ev.params.maxDets[-1]
    scores, hits, n_gt = [], [], 0
    for img in ev.evalImgs:
        if img is None or img["aRng"] != area_all or img["maxDet"] != max_det:
            continue
        n_gt += int(np.sum(~np.asarray(img["gtIgnore"], dtype=bool)))
        keep = ~img["dtIgnore"][0].astype(bool)  # row 0 = IoU threshold 0.5
        scores.append(np.asarray(img["dtScores"])[keep])
        hits.append(img["dtMatches"][0][keep] > 0)
    scores, hits = np.concatenate(scores or [[]]), np.concatenate(hits or [[]]).astype(bool)
    if n_gt == 0 or len(scores) == 0:
        return 0.0, 0.0
    order = np.argsort(-scores, kind="mergesort")
    tp = np.cumsum(hits[order])
    fp = np.cumsum(~hits[order])
    recall = tp / n_gt
    precision = tp / np.maximum(tp + fp, 1)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    best = int(np.argmax(f1))
    return float(precision[best]), float(recall[best])
