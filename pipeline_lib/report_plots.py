"""The run report's slimming, deployment and sample plots (pipeline_lib.report holds the tables).

    plot_channels(read_json("results/prune.json"), "results/plots/channels.png")
    plot_pareto(summary_table(...), "mAP50_95", "results/plots/pareto.png", sweep=[{"label": "r=0.3", "flops": ..., "mAP50_95": ...}])
    draw_samples(task, manifest, {"baseline": "results/metrics/baseline.predictions.json", ...}, "results/plots/samples")

Family specifics go through the Task contract: `report_samples` + `draw` for the sample images,
`report_figures` for a family's own evaluation figures.
"""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from .chain import sweep_label
from .export.geometry import LATENCY_HEAD, deployment_head, geometry_label
from .io import read_json
from .plotting import plt, save_figure, wrapped
from .targets import target_kind
from .tasks import get_task

log = logging.getLogger("slimflow")

__all__ = ["plot_channels", "prune_request", "pareto_front", "plot_pareto", "sweep_points", "montage",
           "draw_samples", "write_plots"]


def plot_channels(prune_report: dict, out_png: str | os.PathLike) -> Path:
    """Channels of every BatchNorm layer before and after pruning (prune.json "layers"); clamped layers in red."""
    layers = prune_report["layers"]
    clamped = {bn for entry in prune_report.get("clamped", []) for bn in entry["bns"]}
    names, before = list(layers), np.array([v["before"] for v in layers.values()])
    after = np.array([v["after"] for v in layers.values()])
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(min(max(8.0, 0.16 * len(names)), 30.0), 4.5))
    ax.bar(x, before, color="lightgrey", width=0.9, label="before")
    held = np.array([n in clamped for n in names], dtype=bool)
    ax.bar(x[~held], after[~held], width=0.6, color="tab:blue", label="after")
    ax.bar(x[held], after[held], width=0.6, color="tab:red", label="after, clamped (min_channels or tied γ)")
    step = max(1, len(names) // 60)  # at most ~60 names on the axis
    ax.set_xticks(x[::step], names[::step], rotation=90, fontsize=6)
    ax.set_xlim(-1, len(names))
    request = prune_request(prune_report).removeprefix("- ").replace("**", "")
    ax.set_ylabel("channels")
    ax.set_title(wrapped(fig, f"channels per BatchNorm layer: {before.sum()} → {after.sum()}; {request}; "
                         f"achieved ratio {prune_report['ratio_achieved']:.3g}"))
    ax.legend(fontsize=8)
    return save_figure(fig, out_png)


def prune_request(prune_report: dict) -> str:
    """What the prune step was asked for: a ratio, or a target with how the search met it."""
    search = prune_report.get("search")
    if search is None:
        return f"- requested ratio: **{prune_report['ratio_requested']:.3g}** of the prunable channels"
    kind, value = target_kind(search["target"])
    after, unpruned = prune_report["after"]["flops"], search["unpruned"]
    chosen = next(p for p in search["probes"] if p["threshold"] == search["threshold"]) if search["probes"] else {}
    reached = {"flops": f"{after / unpruned['flops']:.3g} of the FLOPs",
               "latency_ms": f"{chosen.get('latency_ms', float('nan')):.3g} ms",
               "speedup": f"{chosen.get('speedup', float('nan')):.3g}x"}[kind]
    how = f"reused from {search['reused']}" if "reused" in search else f"{len(search['probes'])} probes"
    at = search.get("geometry")  # a timed target's geometry (absent from a prune.json before it was recorded)
    where = f", timed at {geometry_label(at)} {at['precision'].upper()}" if at else ""
    where += " against the unpruned FP32" if at and at["precision"] == "int8" else ""
    return f"- target: {kind} {value:g}: reached {reached}{where} (threshold by bisection, {how})"


def pareto_front(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Indices of the points no other point beats on both (lower x, higher y), by increasing x."""
    order = np.lexsort((-np.asarray(y), np.asarray(x)))
    front, best = [], -np.inf
    for i in order:
        if y[i] > best:
            front.append(i)
            best = y[i]
    return np.array(front, dtype=int)


def _points(ax, x, y, labels, **style):
    """Labelled points (no legend entry when there are none); a label that would print over an earlier
    one (less than a line apart, horizontally within that label's width) moves up a line."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if not len(x):
        return
    ax.scatter(x, y, zorder=3, **style)
    ax.autoscale_view()
    at = ax.transData.transform(np.column_stack([x, y])) * 72 / ax.figure.dpi  # in points
    placed = []  # (x, y, width) of each label, in points
    for (px, py), xi, yi, label in zip(at, x, y, labels):
        lift = 4
        while any(abs(py + lift - qy) < 9 and -4.2 * len(label) < px - qx < w for qx, qy, w in placed):
            lift += 9
        placed.append((px, py + lift, 4.2 * len(str(label))))
        ax.annotate(label, (xi, yi), textcoords="offset points", xytext=(4, lift), fontsize=7)


def _front(ax, x, y):
    """The dashed Pareto front, in the legend only where it is drawn: two points or more."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    front = pareto_front(x, y) if len(x) else []
    if len(front) > 1:
        ax.step(x[front], y[front], where="post", color="grey", ls="--", label="Pareto front")


def plot_pareto(table: pd.DataFrame, metric: str, out_png: str | os.PathLike, sweep: list[dict] = ()) -> Path:
    """Accuracy against ONNX Runtime latency (exported models) and against FLOPs (checkpoints and
    the prune-ratio sweep's models, which are not exported); the dashed step is each panel's Pareto front.

    `sweep`: {"label", "flops", metric} per swept ratio."""
    fig, (ax_lat, ax_flops) = plt.subplots(1, 2, figsize=(11, 4.5))
    # latency where the models are deployed (the largest input size, fewest threads, batch 1) when
    # the export timed such geometries, else DESIGN's latency_ms (trained size, export.threads)
    head = deployment_head(list(table.columns))
    column, where = (head, head.removeprefix(f"{LATENCY_HEAD} ")) if head else ("latency_ms", "the trained size, b1")
    onnx = table[(table["runtime"] != "torch") & table[column].notna()]
    _points(ax_lat, onnx[column], onnx[metric], onnx["stage"], color="tab:blue", label="exported models")
    _front(ax_lat, onnx[column], onnx[metric])
    if onnx.empty:
        ax_lat.text(0.5, 0.5, "no ONNX Runtime latency measured", ha="center", transform=ax_lat.transAxes)
    ax_lat.set(xlabel=f"ONNX Runtime latency at {where}, ms (median)", ylabel=metric,
               title="accuracy against ONNX latency")
    torch_rows = table[table["runtime"] == "torch"]
    gflops, accuracy = list(torch_rows["flops"] / 1e9), list(torch_rows[metric])
    _points(ax_flops, gflops, accuracy, torch_rows["stage"], color="tab:blue", label="checkpoints")
    if sweep:
        sweep_gflops, sweep_accuracy = [s["flops"] / 1e9 for s in sweep], [s[metric] for s in sweep]
        _points(ax_flops, sweep_gflops, sweep_accuracy, [s["label"] for s in sweep], color="tab:orange",
                marker="x", label="sweep: pruned + finetuned")
        gflops, accuracy = gflops + sweep_gflops, accuracy + sweep_accuracy
    _front(ax_flops, gflops, accuracy)
    ax_flops.set(xlabel="GFLOPs per image", ylabel=metric, title="accuracy against FLOPs (PyTorch checkpoints)")
    for ax in (ax_lat, ax_flops):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    return save_figure(fig, out_png)


def montage(images: list[Path], title: str, out_png: str | os.PathLike, truth: list[Path] = ()) -> Path:
    """Images side by side (wide ones, like ranked strips, one per row) under one title; `truth`, the
    same images with their ground truth, as a row above the predictions, each row named."""
    rows = [("ground truth", list(truth)), ("predictions", images)] if truth else [("", images)]
    opened = [[np.asarray(Image.open(p).convert("RGB")) for p in row] for _, row in rows]
    wide = not truth and np.mean([im.shape[1] / im.shape[0] for im in opened[0]]) > 2
    grid = [[im] for im in opened[0]] if wide else opened
    n_rows, n_cols = len(grid), max(len(row) for row in grid)
    h, w = grid[0][0].shape[:2]
    scale = 9.0 / (w * n_cols)  # inches per pixel: 9 inches wide in all
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(9, max(h * n_rows * scale, 1.0) + 0.6 + 0.3 * bool(truth)),
                             squeeze=False)
    for r, row in enumerate(grid):
        for c, ax in enumerate(axes[r]):
            ax.axis("off")
            if c < len(row):
                ax.imshow(row[c], interpolation="nearest")
        if truth:
            axes[r][0].set_title(rows[r][0], loc="left", fontsize=10)
    fig.suptitle(title)
    return save_figure(fig, out_png)


def _drawn(task, items, names, folder: Path, prefix: str) -> list[Path]:
    """Each (image, prediction or truth) drawn by the family into folder/<prefix><i>.png (those it draws)."""
    drawn = []
    for i, (image, boxes) in enumerate(items):
        out = folder / f"{prefix}{i}.png"
        if task.draw(Path(image), boxes, names, out):
            drawn.append(out)
    return drawn


def draw_samples(task, manifest: dict, predictions: dict[str, str | os.PathLike], out_dir: str | os.PathLike,
                 n: int = 4) -> list[Path]:
    """One PNG per stage (out_dir/<stage>.png) of `n` val images with the stage's predictions drawn by the
    family (`task.report_samples` picks them, `task.draw` draws them), below the same images with their
    ground truth where the family has it (`task.report_truth`); none for a family that draws nothing."""
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        for stage, path in predictions.items():
            samples = task.report_samples(manifest, Path(path), n)
            truth = task.report_truth(manifest, len(samples))
            shown = _drawn(task, samples, manifest["names"], Path(tmp), f"{stage.replace('/', '_')}-")
            if shown:
                truth_drawn = _drawn(task, zip([image for image, _ in samples], truth), manifest["names"],
                                     Path(tmp), "truth-") if len(truth) == len(samples) else []
                written.append(montage(shown, f"{stage}: predictions on val images", truth=truth_drawn,
                                       out_png=Path(out_dir) / f"{stage.replace('/', '_')}.png"))
    return written


def sweep_points(metrics_paths: list[str | os.PathLike], metric: str) -> list[dict]:
    """The sweep's finetuned models as Pareto points: {"label": "r=0.3", "flops", metric}."""
    points = []
    for path in metrics_paths:
        m = read_json(path)
        points.append({"label": sweep_label(m["stage"]), "flops": m["flops"], metric: m["metrics"][metric]})
    return points


def write_plots(table: pd.DataFrame, metric: str, prune_report: dict | None, *,
                manifest_path: str | os.PathLike | None = None, predictions: dict[str, str | os.PathLike] | None = None,
                sweep_metrics: list[str | os.PathLike] = (), out_channels_png: str | os.PathLike | None = None,
                out_pareto_png: str | os.PathLike | None = None, out_evaluation_dir: str | os.PathLike | None = None,
                out_samples_dir: str | os.PathLike | None = None, samples: int = 4) -> None:
    """The report's plots beyond the summary's: channels per layer (prune.json), the Pareto plot
    (`table` is summary_table's, `sweep_metrics` the sweep's finetuned metrics files), and from each
    stage's evaluate predictions ({stage: path}) the family's figures and drawn sample predictions.
    Each output is skipped when its path is None; the two folders are created even when empty."""
    if out_channels_png is not None and prune_report is not None:
        plot_channels(prune_report, out_channels_png)
    if out_pareto_png is not None:
        sweep = sweep_points(list(sweep_metrics), metric)
        plot_pareto(table, metric, out_pareto_png, sweep)
        log.info("pareto: %d artifacts, %d sweep points -> %s", len(table), len(sweep), out_pareto_png)
    if out_evaluation_dir is None and out_samples_dir is None:
        return
    manifest = read_json(manifest_path)
    task = get_task(manifest["task"])
    predictions = {stage: Path(path) for stage, path in (predictions or {}).items()}
    if out_evaluation_dir is not None:
        Path(out_evaluation_dir).mkdir(parents=True, exist_ok=True)
        task.report_figures(manifest, predictions, Path(out_evaluation_dir))
    if out_samples_dir is not None:
        Path(out_samples_dir).mkdir(parents=True, exist_ok=True)
        draw_samples(task, manifest, predictions, out_samples_dir, samples)
