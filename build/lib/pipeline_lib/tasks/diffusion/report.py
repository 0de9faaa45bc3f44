"""Diffusion's figures for the run report: each stage's samples as a grid, one row per digit.

    sample_grids({"baseline": read_json("results/metrics/baseline.predictions.json"), ...}, names, out_dir)
    # samples_baseline.png: grid_per_class samples of every digit, from the evaluation's fixed noise seed

The samples are the ones `evaluate` judged (the predictions file keeps the first few per digit),
so a grid shows what the stage's cond_acc and fid were computed from; a sample the judge read as
another digit is framed in red.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...plotting import plt, save_figure

__all__ = ["sample_grids"]


def sample_grids(predictions: dict[str, dict], names: list[str], out_dir: Path) -> list[Path]:
    paths = []
    for stage, pred in predictions.items():
        samples, labels, judged = np.asarray(pred["samples"], np.uint8), pred["labels"], pred["judged"]
        rows = {c: [i for i, label in enumerate(labels) if label == c] for c in range(len(names))}
        cols = max((len(r) for r in rows.values()), default=1)
        fig, axes = plt.subplots(len(names), cols, figsize=(cols * 0.6 + 0.6, len(names) * 0.6 + 0.8), squeeze=False)
        for c, row in rows.items():
            for j in range(cols):
                ax = axes[c, j]
                ax.set_xticks([]), ax.set_yticks([])
                if j < len(row):
                    ax.imshow(samples[row[j]], cmap="gray", vmin=0, vmax=255)
                    if judged[row[j]] != c:
                        for spine in ax.spines.values():
                            spine.set(color="red", linewidth=2)
                else:
                    ax.axis("off")
            axes[c, 0].set_ylabel(names[c], rotation=0, labelpad=10)
        m = pred["metrics"]
        fig.suptitle(f"{stage}: cond_acc {m['cond_acc']:.3f}, fid {m['fid']:.2f} (red: judged another digit)",
                     fontsize=9)
        paths.append(save_figure(fig, out_dir / f"samples_{stage.replace('/', '_')}.png"))
    return paths
