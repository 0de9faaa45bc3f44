"""Keypoint predictions in image coordinates and OKS AP from pycocotools' COCOeval — never a look-alike.

    people = predict(model, loader, flip_pairs, flip_test=True)        # per crop: keypoints (K, 3), score, ...
    results = coco_results(people, category_id=1)                      # rescored, OKS-NMSed COCO results
    metrics = coco_keypoint_metrics("results/data/person_keypoints_val.json", results, COCO_SIGMAS)
    # {"AP": ..., "AP50": ..., "AP75": ..., "AR": ...}

The official HRNet test: average the heatmaps of the crop and of its mirror (flipped back with the
left/right pairs), decode argmax plus a quarter pixel, map back through the crop's affine, score a
person as box score x the mean peak of its keypoints above 0.2, and drop near-duplicates whose OKS
with a better-scored person exceeds 0.9.
"""
from __future__ import annotations

import contextlib
import copy
import io
from collections import defaultdict
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import nn

from ...io import read_json
from .heatmaps import decode, flip_back

__all__ = ["COCO_SIGMAS", "METRIC_KEYS", "predict", "coco_results", "oks_nms", "coco_keypoint_metrics"]

# COCO's per-keypoint OKS constants (COCOeval's kpt_oks_sigmas), in the order of its 17 keypoints.
COCO_SIGMAS = [0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107,
               0.087, 0.087, 0.089, 0.089]
METRIC_KEYS = ("AP", "AP50", "AP75", "AR")
VIS_THRESHOLD = 0.2  # keypoints whose peak is below this do not count towards the person's score
OKS_NMS = 0.9


@torch.no_grad()
def predict(model: nn.Module, loader, flip_pairs: Sequence[Sequence[int]], flip_test: bool = True,
            device: torch.device = torch.device("cpu")) -> list[dict]:
    """One entry per crop: {"image_id", "keypoints": (K, 3) [x, y, peak] in image coordinates, "box_score", "area"}.

    Only calls `model(images)`: the model may be an ONNX Runtime stand-in.
    """
    people = []
    for batch in loader:
        images = batch["images"].to(device)
        heatmaps = model(images).float()
        if flip_test:
            heatmaps = (heatmaps + flip_back(model(images.flip(3)).float(), flip_pairs)) / 2
        coords, maxvals = decode(heatmaps.cpu().numpy())
        inverse = batch["inverse"].numpy()  # (B, 2, 3): heatmap -> image
        xy = np.einsum("bij,bkj->bki", inverse[:, :, :2], coords) + inverse[:, None, :, 2]
        for n in range(len(xy)):
            people.append({"image_id": int(batch["image_id"][n]), "keypoints": np.concatenate([xy[n], maxvals[n, :, None]], 1),
                           "box_score": float(batch["score"][n]), "area": float(batch["area"][n])})
    return people


def _oks(a: np.ndarray, others: np.ndarray, area: float, sigmas: np.ndarray) -> np.ndarray:
    """OKS of keypoints `a` (K, 3) with each of `others` (N, K, 3), at scale `area` (COCOeval's formula)."""
    var = (2 * sigmas) ** 2
    d2 = ((others[..., :2] - a[None, :, :2]) ** 2).sum(-1)
    return np.exp(-d2 / var / (2 * area + np.spacing(1))).mean(-1)


def oks_nms(people: list[dict], threshold: float, sigmas: np.ndarray) -> list[dict]:
    """Greedy NMS within one image: keep the best-scored person, drop those with OKS > threshold to it."""
    order = sorted(range(len(people)), key=lambda i: -people[i]["score"])
    kept = []
    while order:
        best, order = order[0], order[1:]
        kept.append(people[best])
        if order:
            oks = _oks(people[best]["keypoints"], np.stack([people[i]["keypoints"] for i in order]),
                       people[best]["area"], sigmas)
            order = [i for i, o in zip(order, oks) if o <= threshold]
    return kept


def coco_results(people: list[dict], category_id: int, sigmas: Sequence[float] = COCO_SIGMAS) -> list[dict]:
    """COCO keypoint results: rescored by keypoint confidence, OKS-NMSed per image."""
    by_image: dict[int, list[dict]] = defaultdict(list)
    for p in people:
        peaks = p["keypoints"][:, 2]
        confident = peaks[peaks > VIS_THRESHOLD]
        score = p["box_score"] * (float(confident.mean()) if len(confident) else 0.0)
        by_image[p["image_id"]].append({**p, "score": score})
    results = []
    for image_id in sorted(by_image):
        for p in oks_nms(by_image[image_id], OKS_NMS, np.asarray(sigmas)):
            results.append({"image_id": image_id, "category_id": category_id,
                            "keypoints": [round(float(v), 3) for v in p["keypoints"].flatten()],
                            "score": round(p["score"], 6)})
    return results


def _quiet(fn, *args):
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress to stdout
        return fn(*args)


def coco_keypoint_metrics(gt: str | Path | dict, results: list[dict], sigmas: Sequence[float]) -> dict[str, float]:
    """AP (OKS 0.50:0.95), AP50, AP75 and AR: COCOeval(iouType="keypoints") stats 0, 1, 2 and 5."""
    if not results:
        return dict.fromkeys(METRIC_KEYS, 0.0)
    coco_gt = COCO()
    coco_gt.dataset = copy.deepcopy(gt) if isinstance(gt, dict) else read_json(gt)
    _quiet(coco_gt.createIndex)
    coco_dt = _quiet(coco_gt.loadRes, copy.deepcopy(results))
    ev = COCOeval(coco_gt, coco_dt, "keypoints")
    ev.params.kpt_oks_sigmas = np.asarray(sigmas, dtype=np.float64)
    for step in (ev.evaluate, ev.accumulate, ev.summarize):
        _quiet(step)
    return {key: max(float(ev.stats[i]), 0.0) for key, i in zip(METRIC_KEYS, (0, 1, 2, 5))}
