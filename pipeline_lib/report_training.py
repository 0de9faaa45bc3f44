"""The report's per-epoch training figures, from each stage's training CSV (results/train/<stage>.csv).

    plot_stage_curves("results/train/sparse.csv", "sparse", "results/plots/training/sparse.png")
    plot_gamma_quantiles({"sparse": "results/train/sparse.csv"}, "results/plots/gamma_quantiles.png", threshold=0.02)

A stage figure has a panel per quantity the CSV holds, as ultralytics' results.png: each `train/*`
column (a loss term averaged over the epoch's training batches) and each `metrics/*` column (the
validation metric, NaN on epochs that did not validate). The engine logs no validation losses, so
none are drawn. The γ figure plots the `gamma/*` columns L1 sparsity training logs.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd

from .plotting import plt, save_figure, wrapped

__all__ = ["CURVE_PREFIXES", "stage_quantities", "plot_stage_curves", "plot_gamma_quantiles", "write_training_plots"]

CURVE_PREFIXES = {"train/": ("training loss", "tab:blue"), "metrics/": ("validation", "tab:orange")}
PANEL_COLUMNS = 4  # panels per row: five or fewer quantities per row stay legible at the report's width


def stage_quantities(history: pd.DataFrame) -> list[str]:
    """The CSV's columns drawn as curves: the loss terms, then the validation metrics, in the file's order."""
    return [c for prefix in CURVE_PREFIXES for c in history.columns if c.startswith(prefix)]


def plot_stage_curves(csv: str | os.PathLike, stage: str, out_png: str | os.PathLike) -> Path:
    """One panel per loss term and validation metric of one stage against the epoch; a metric
    validated on a few epochs only is drawn through those, each marked."""
    history = pd.read_csv(csv)
    quantities = stage_quantities(history)
    cols = max(1, min(PANEL_COLUMNS, len(quantities)))
    rows = max(1, math.ceil(len(quantities) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols + 0.6, 2.5 * rows + 0.8), squeeze=False)
    for ax, column in zip(axes.flat, quantities):
        prefix = next(p for p in CURVE_PREFIXES if column.startswith(p))
        kind, colour = CURVE_PREFIXES[prefix]
        points = history[["epoch", column]].dropna()
        ax.plot(points["epoch"], points[column], marker="o", ms=3, color=colour)
        ax.set_title(f"{kind}: {column.removeprefix(prefix)}", fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_xlim(history["epoch"].min() - 0.5, history["epoch"].max() + 0.5)  # one epoch axis in every panel
    for ax in list(axes.flat)[len(quantities):]:
        ax.axis("off")
    if not quantities:
        axes[0, 0].text(0.5, 0.5, f"{Path(csv).name} holds no train/ or metrics/ columns", ha="center",
                        transform=axes[0, 0].transAxes)
    fig.suptitle(wrapped(fig, f"{stage}: training loss terms (mean over each epoch's batches, blue) and "
                              f"validation metrics (orange), per epoch", fontsize=11), fontsize=11)
    return save_figure(fig, out_png)


def plot_gamma_quantiles(csvs: dict[str, str | os.PathLike], out_png: str | os.PathLike,
                         threshold: float | None = None) -> Path:
    """|γ| quantiles of the prunable BatchNorm channels per epoch (log scale) and the fraction below
    1e-2 and 1e-3, for each stage whose CSV logged them (the sparsity stage); `threshold` is the
    prune step's |γ| threshold (a channel goes when its coupled group's largest |γ| is below it)."""
    fig, (ax_q, ax_frac) = plt.subplots(1, 2, figsize=(11, 4))
    logged = {stage: pd.read_csv(path) for stage, path in csvs.items()}
    logged = {stage: h for stage, h in logged.items() if "gamma/q50" in h}
    for stage, history in logged.items():
        for q, style in (("q90", ":"), ("q50", "-"), ("q10", "--")):
            ax_q.plot(history["epoch"], history[f"gamma/{q}"], ls=style, marker="o", ms=3, label=f"{stage}: {q}")
        for col, style in (("gamma/frac_lt_1e-2", "-"), ("gamma/frac_lt_1e-3", "--")):
            if col in history:
                ax_frac.plot(history["epoch"], history[col], ls=style, marker="o", ms=3,
                             label=f"{stage}: |γ| < {col.rsplit('_', 1)[-1]}")
    if threshold is not None and logged:
        ax_q.axhline(threshold, color="tab:red", lw=1, label=f"prune threshold {threshold:.4g}")
    if not logged:
        ax_q.text(0.5, 0.5, "no stage logged γ quantiles (no sparsity training)", ha="center",
                  transform=ax_q.transAxes)
    ax_q.set(xlabel="epoch", ylabel="|γ| of prunable BatchNorm channels", title="|γ| quantiles per epoch")
    low = min((h["gamma/q10"].min() for h in logged.values()), default=1.0)
    high = max((h["gamma/q90"].max() for h in logged.values()), default=1.0)
    if low > 0 and high / low > 10:  # log scale only where the quantiles span a decade or more
        ax_q.set_yscale("log")
    ax_frac.set(xlabel="epoch", ylabel="fraction of channels", ylim=(-0.02, 1.02),
                title="channels with |γ| below 1e-2 and 1e-3")
    for ax in (ax_q, ax_frac):
        ax.xaxis.get_major_locator().set_params(integer=True)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    return save_figure(fig, out_png)


def write_training_plots(csvs: dict[str, str | os.PathLike], out_dir: str | os.PathLike,
                         out_gamma_png: str | os.PathLike, threshold: float | None = None) -> list[Path]:
    """out_dir/<stage>.png for every trained stage's CSV ({stage: path}), and the γ quantiles figure."""
    paths = [plot_stage_curves(path, stage, Path(out_dir) / f"{stage.replace('/', '_')}.png")
             for stage, path in csvs.items()]
    return paths + [plot_gamma_quantiles(csvs, out_gamma_png, threshold)]
