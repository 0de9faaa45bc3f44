"""Detection's figures for the run report, from COCOeval's own accumulated precision array.

    write_figures(gt_dict, {"baseline": detections, "pruned_finetuned": ...}, names, Path("results/plots/evaluation"))
    # pr_curves.png: precision against recall at IoU 0.5 per stage (all classes, COCOeval's 101 recall points)
    # per_class_ap.png: AP (IoU 0.50:0.95) of every class per stage

`ev.eval["precision"]` is (IoU thresholds, recall points, classes, areas, maxDets), -1 where a
class has no ground truth; summarize() averages its entries > -1 to stats[0] and stats[1], so a
class-mean here equals the reported mAP50_95 / mAP50.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...plotting import plt, save_figure
from .evaluate import coco_eval

__all__ = ["precision_array", "class_ap", "write_figures"]


def precision_array(gt: dict, detections: list[dict]) -> np.ndarray | None:
    """COCOeval's precision at area "all" and the largest maxDets: (IoU thresholds, 101 recall points, classes)."""
    ev = coco_eval(gt, detections)
    return None if ev is None else ev.eval["precision"][:, :, :, 0, -1]


def _mean_valid(p: np.ndarray, axis) -> np.ndarray:
    valid = p > -1
    return np.where(valid.any(axis=axis), np.where(valid, p, 0).sum(axis=axis) / np.maximum(valid.sum(axis=axis), 1),
                    np.nan)


def class_ap(precision: np.ndarray) -> np.ndarray:
    """AP over IoU 0.50:0.95 per class (NaN for a class without ground truth), as COCOeval's summarize."""
    return _mean_valid(precision, axis=(0, 1))


def write_figures(gt: dict, predictions: dict[str, list[dict]], names: list[str], out_dir: Path) -> list[Path]:
    """pr_curves.png and per_class_ap.png in out_dir (a stage without detections draws no curve, AP 0)."""
    arrays = {stage: precision_array(gt, dets) for stage, dets in predictions.items()}
    recall = np.linspace(0, 1, 101)  # COCOeval's params.recThrs
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for stage, p in arrays.items():
        if p is None:
            continue
        curve = _mean_valid(p[0], axis=1)  # IoU 0.5, mean over the classes with ground truth
        ax.plot(recall, curve, label=f"{stage} (AP50 {np.nanmean(curve):.3f})")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02),
           title="precision-recall at IoU 0.5 (COCOeval, all classes)")
    ax.legend(fontsize=8)
    paths = [save_figure(fig, out_dir / "pr_curves.png")]

    fig, ax = plt.subplots(figsize=(7, min(1.5 + 0.25 * len(names) * len(arrays), 40)))
    height = 0.8 / max(len(arrays), 1)
    y = np.arange(len(names))
    scored = [class_ap(p) for p in arrays.values() if p is not None]
    no_gt = np.isnan(scored[0]) if scored else np.zeros(len(names), dtype=bool)  # COCOeval's -1: no ground truth
    for i, (stage, p) in enumerate(arrays.items()):
        ap = np.zeros(len(names)) if p is None else np.nan_to_num(class_ap(p))
        ax.barh(y + i * height, ap, height=height, label=stage)
    ax.set_yticks(y + height * (len(arrays) - 1) / 2,
                  [f"{name} (no val boxes)" if missing else name for name, missing in zip(names, no_gt)])
    ax.invert_yaxis()
    ax.set(xlabel="AP (IoU 0.50:0.95)", title="per-class AP (COCOeval)", xlim=(0, 1))
    ax.legend(fontsize=8)
    paths.append(save_figure(fig, out_dir / "per_class_ap.png"))
    return paths
