"""Figures as files: matplotlib without a display, and an atomic PNG writer.

    from pipeline_lib.plotting import plt, save_figure
    fig, ax = plt.subplots()
    ...
    save_figure(fig, "results/plots/evaluation/pr_curves.png")   # tight layout, atomic, closed

The run report (`report`, `report_plots`) and the families' own report figures
(`tasks/<family>/report.py`) draw through it, so it sits low (docs/ARCHITECTURE.md): it imports
only `io`, and importing it selects the Agg backend before pyplot loads.
"""
from __future__ import annotations

import os
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and cluster nodes
import matplotlib.pyplot as plt  # noqa: E402

from .io import atomic_path  # noqa: E402

__all__ = ["plt", "save_figure", "wrapped"]


def wrapped(fig, text: str, fontsize: float = 12.0, share: float = 1.0) -> str:
    """`text` broken into lines that fit `share` of the figure's width at `fontsize` points (a
    character is taken as 0.6 of the font size wide, which holds for DejaVu Sans' digits and letters)."""
    width_pt = fig.get_figwidth() * 72 * share
    return "\n".join(textwrap.wrap(text, max(20, int(width_pt / (0.6 * fontsize)))))


def save_figure(fig, out_png: str | os.PathLike) -> Path:
    """Write a figure as PNG atomically and close it."""
    fig.tight_layout()
    Path(out_png).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return Path(out_png)
