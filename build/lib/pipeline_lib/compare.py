"""Runs side by side: the summaries of several experiments in one table and one plot.

    compare(["runs/r05", "runs/r08"], out_png="compare.png")   # reads runs/*/results/summary.csv

A run is a folder holding `results/summary.csv` (what `snakemake --directory RUN` writes), or the
results folder itself.
"""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from .errors import UserError
from .io import atomic_path
from .layout import Results
from .plotting import plt, save_figure

__all__ = ["read_runs", "summary_cells", "compare"]

# Columns every summary has, beside the family's metrics (whose first is the headline accuracy).
_COST = ["params", "flops", "latency_ms", "file_bytes", "speedup_vs_baseline"]


def _summary_path(run: Path) -> Path:
    for candidate in (run / Results().summary_csv, run / "summary.csv"):  # a run folder, or its results folder
        if candidate.is_file():
            return candidate
    raise UserError(f"{run}: no results/summary.csv (run `snakemake --directory {run}` first, or name the run's folder)")


def _read_summary(path: Path) -> pd.DataFrame:
    """A run's summary.csv, with the columns compare reads; a damaged one is one UserError naming it."""
    redo = "rerun the report (snakemake) to write it again"
    try:
        table = pd.read_csv(path)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise UserError(f"{path}: not a readable CSV ({type(e).__name__}); {redo}") from None
    missing = [c for c in ("stage", "runtime", "flops") if c not in table.columns]
    metrics = [c for c in table.columns if c not in ("stage", "runtime", *_COST)]
    if missing or not metrics:
        raise UserError(f"{path}: not a slimflow summary (no {', '.join(missing) or 'metric'} column); {redo}")
    for column in ("flops", metrics[0]):
        if not pd.api.types.is_numeric_dtype(table[column]):
            raise UserError(f"{path}: column {column!r} holds values that are not numbers; {redo}")
    return table


def read_runs(runs: list[str | os.PathLike]) -> pd.DataFrame:
    """One table: every row of every run's summary, with the run's name in the first column."""
    if not runs:
        raise UserError("compare: name at least one run folder")
    names = [Path(r).name or str(r) for r in runs]
    if len(set(names)) < len(names):
        names = [str(r) for r in runs]
    tables = [_read_summary(_summary_path(Path(run))).assign(run=name) for run, name in zip(runs, names)]
    table = pd.concat(tables, ignore_index=True)
    return table[["run", *[c for c in table.columns if c != "run"]]]


def _headline(table: pd.DataFrame) -> str:
    """The headline accuracy: the first metric column (summary columns start stage, runtime, metrics...)."""
    return [c for c in table.columns if c not in ("run", "stage", "runtime")][0]


def summary_cells(table: pd.DataFrame) -> pd.DataFrame:
    """A summary's numbers as summary.md prints them: params and FLOPs in millions ("1.77 M"), file size
    in MiB, other numbers to three decimals, "–" where a number does not apply (never nan)."""
    shown = table.copy()
    units = {"params": (1e6, "M"), "flops": (1e6, "M"), "file_bytes": (2**20, "MiB")}
    for col in shown.columns:
        scale, unit = units.get(col, (None, None))
        shown[col] = shown[col].map(lambda v: "–" if pd.isna(v) else f"{v / scale:.2f} {unit}" if scale
                                    else f"{v:.3f}" if isinstance(v, float) else v)
    return shown


_MARKERS = "osD^vP*Xhp"


def _plot(table: pd.DataFrame, metric: str, out_png: str | os.PathLike) -> None:
    """Headline accuracy against FLOPs of each run's checkpoints: a colour per run, a marker per stage,
    points only (stages are no series: a line through them would invent values between them)."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    rows = table[table["runtime"] == "torch"]
    stages = list(dict.fromkeys(rows["stage"]))
    colours = {run: f"C{k % 10}" for k, run in enumerate(dict.fromkeys(rows["run"]))}
    for _, row in rows.iterrows():
        ax.scatter(row["flops"] / 1e6, row[metric], facecolors="none", edgecolors=colours[row["run"]], s=60,
                   linewidths=1.6, zorder=3, marker=_MARKERS[stages.index(row["stage"]) % len(_MARKERS)])
    # hollow markers: stages at the same point (a pruned model and its finetune) stay visible
    handles = [plt.Line2D([], [], ls="", marker="o", color=c, label=run) for run, c in colours.items()]
    handles += [plt.Line2D([], [], ls="", marker=_MARKERS[k % len(_MARKERS)], mfc="none", color="grey", label=stage)
                for k, stage in enumerate(stages)]
    ax.set(xlabel="MFLOPs per image", ylabel=metric, title=f"{metric} against FLOPs, per run (checkpoints)")
    ax.grid(alpha=0.3)
    ax.legend(handles=handles, fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5),
              title="colour: run\nmarker: stage", title_fontsize=8)
    save_figure(fig, out_png)


def compare(runs: list[str | os.PathLike], out_png: str | os.PathLike | None = None,
            out_csv: str | os.PathLike | None = None) -> str:
    """The runs' summaries as one markdown table (returned, numbers as summary.md prints them);
    optionally the plot (headline accuracy against FLOPs, a colour per run, a marker per stage) and the
    table as CSV (the numbers unformatted)."""
    table = read_runs(runs)
    metric = _headline(table)
    shown = summary_cells(table[["run", "stage", metric, *[c for c in _COST if c in table.columns]]])
    text = shown.to_markdown(index=False, disable_numparse=True,
                             colalign=["left", "left", *["right"] * (len(shown.columns) - 2)])
    if out_csv is not None:
        with atomic_path(out_csv) as tmp:
            table.to_csv(tmp, index=False)
    if out_png is not None:
        _plot(table, metric, out_png)
    return text
