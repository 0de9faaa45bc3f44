"""Detection's figures for the run report, from COCOeval's own accumulated precision array.

    write_figures(gt_dict, {"baseline": detections, "pruned_finetuned": ...}, names, Path("results/plots/evaluation"))
    # pr_curves.png: precision against recall at IoU 0.5 per stage (all classes, COCOeval's 101 recall points)
    # per_class_ap.png: AP (IoU 0.50:0.95) of every class per stage
    # confidence_curves.png, confusion_matrix.png: the last stage's (the deployed model's), matching.py's

`ev.eval["precision"]` is (IoU thresholds, recall points, classes, areas, maxDets), -1 where a
class has no ground truth; summarize() averages its entries > -1 to stats[0] and stats[1], so a
class-mean here equals the reported mAP50_95 / mAP50.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...plotting import plt, save_figure, wrapped
from .evaluate import coco_eval
from .matching import CONF, IOU, confidence_curves, confusion_matrix

__all__ = ["precision_array", "class_ap", "write_figures", "plot_confidence_curves", "plot_confusion_matrix"]

CLASS_LINES_UP_TO = 20  # classes drawn one thin line each in the curves; more draw the mean only


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
    if predictions:
        stage = list(predictions)[-1]  # the report passes the chain's stages in order: the deployed one last
        paths += [plot_confidence_curves(gt, predictions[stage], names, stage, out_dir / "confidence_curves.png"),
                  plot_confusion_matrix(gt, predictions[stage], names, stage, out_dir / "confusion_matrix.png")]
    return paths


def plot_confidence_curves(gt: dict, detections: list[dict], names: list[str], stage: str, out_png: Path) -> Path:
    """Precision, recall and F1 against the score threshold: each class thin, the mean over classes
    with ground truth thick, its best F1 marked (ultralytics' P_curve, R_curve and F1_curve in one)."""
    curves = confidence_curves(gt, detections, len(names))
    scored = curves["count"] > 0
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    for ax, key in zip(axes, ("precision", "recall", "f1")):
        if scored.sum() <= CLASS_LINES_UP_TO:
            for c in np.flatnonzero(scored):  # named in the F1 panel's legend only
                ax.plot(curves["confidence"], curves[key][c], lw=0.8, alpha=0.7, color=f"C{1 + c % 9}",
                        label=names[c] if key == "f1" else None)
        mean = curves[key][scored].mean(axis=0) if scored.any() else np.full(len(curves["confidence"]), np.nan)
        label = f"all classes (mean of {int(scored.sum())})"
        if key == "f1" and np.isfinite(mean).any():
            best = int(np.nanargmax(mean))
            label = f"all classes: best F1 {mean[best]:.2f} at {curves['confidence'][best]:.2f}"
            ax.axvline(curves["confidence"][best], color="grey", ls="--", lw=0.8)
        ax.plot(curves["confidence"], mean, color="tab:blue", lw=2.5, label=label)
        ax.set(xlabel="confidence threshold", ylabel=key if key != "f1" else "F1", xlim=(0, 1), ylim=(0, 1.02),
               title=f"{key if key != 'f1' else 'F1'} against confidence")
        ax.legend(fontsize=7, loc="best")
    fig.suptitle(f"{stage} on the val split: detections matched to ground truth of their class at IoU {IOU} "
                 f"(thin lines: one class each)", fontsize=10)
    return save_figure(fig, out_png)


def plot_confusion_matrix(gt: dict, detections: list[dict], names: list[str], stage: str, out_png: Path) -> Path:
    """The confusion matrix at score CONF and IoU IOU, each true class's column normalised, counts printed."""
    counts = confusion_matrix(gt, detections, len(names))
    labels = list(names) + ["background"]
    share = counts / np.maximum(counts.sum(axis=0, keepdims=True), 1)
    side = min(max(4.5, 0.55 * len(labels) + 2.5), 20)
    fig, ax = plt.subplots(figsize=(side + 1.2, side))
    shown = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    if len(labels) <= 30:  # beyond that the numbers would not fit their cells
        for (r, c), n in np.ndenumerate(counts):
            if n:
                ax.text(c, r, str(n), ha="center", va="center", fontsize=8,
                        color="white" if share[r, c] > 0.5 else "black")
    ax.set_xticks(range(len(labels)), labels, rotation=90 if len(labels) > 8 else 0, fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set(xlabel="true class (background: a detection of nothing)", ylabel="predicted class (background: missed)")
    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04, label="share of the true class's boxes")
    ax.set_title(wrapped(fig, f"{stage}: confusion matrix at score ≥ {CONF}, IoU ≥ {IOU} (counts; colour: share "
                              f"of each column)", fontsize=11), fontsize=11)
    return save_figure(fig, out_png)
