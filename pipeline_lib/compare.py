"""Runs side by side: the summaries of several experiments in one table and one plot.

    compare(["runs/r05", "runs/r08"], out_png="compare.png")   # reads runs/*/results/summary.csv

A run is a folder holding `results/summary.csv` (what `snakemake --directory RUN` writes), or the
results folder itself.
"""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and cluster nodes
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from .errors import UserError  # noqa: E402
from .io import atomic_path  # noqa: E402
from .layout import Results  # noqa: E402

__all__ = ["read_runs", "compare"]

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


def compare(runs: list[str | os.PathLike], out_png: str | os.PathLike | None = None,
            out_csv: str | os.PathLike | None = None) -> str:
    """The runs' summaries as one markdown table (returned); optionally the plot and the table as CSV.

    The plot: headline accuracy against FLOPs, one colour per run, one point per artifact.
    """
    table = read_runs(runs)
    metric = _headline(table)
    shown = table[["run", "stage", metric, *[c for c in _COST if c in table.columns]]]
    text = shown.to_markdown(index=False, floatfmt=".4g")
    if out_csv is not None:
        with atomic_path(out_csv) as tmp:
            table.to_csv(tmp, index=False)
    if out_png is not None:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        torch_rows = table[table["runtime"] == "torch"]
        for run, rows in torch_rows.groupby("run", sort=False):
            ax.plot(rows["flops"] / 1e6, rows[metric], "o-", label=run)
            for _, row in rows.iterrows():
                ax.annotate(row["stage"], (row["flops"] / 1e6, row[metric]), fontsize=7, xytext=(3, 3),
                            textcoords="offset points")
        ax.set(xlabel="MFLOPs per image", ylabel=metric, title=f"{metric} against FLOPs, per run")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        with atomic_path(out_png) as tmp:
            fig.savefig(tmp, format="png", dpi=120)
        plt.close(fig)
    return text
