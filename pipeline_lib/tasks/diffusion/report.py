"""Diffusion's figures for the run report: each stage's samples as a grid, one row per digit.

    sample_grids({"baseline": read_json("results/metrics/baseline.predictions.json"), ...}, names, out_dir)
    # samples_baseline.png: grid_per_class samples of every digit, from the evaluation's fixed noise seed

The samples are the ones `evaluate` judged (the predictions file keeps the first few per digit),
so a grid shows what the stage's cond_acc and fid were computed from; a sample the judge read as
another digit is framed in red.

    sentence, table = judge_ceiling(read_json("results/data/evaluator.json"), {"baseline": predictions, ...})

The judge's own val accuracy, per digit, is the ceiling of every stage's cond_acc: `judge_ceiling`
puts the two side by side for the report's pages.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ...plotting import plt, save_figure

__all__ = ["sample_grids", "judge_ceiling"]
_WEAK = 2  # the judge's weakest digits the sentence names


def judge_ceiling(judge: dict, predictions: dict[str, dict]) -> tuple[str, str]:
    """One sentence on the judge's val accuracy as the ceiling of cond_acc (its epochs and weakest
    digits), and a Markdown table: per digit, the judge's val accuracy beside each stage's cond_acc.
    `judge` is evaluator.json; `predictions` {stage: its predictions file} (per-digit cond_acc in
    files written since the judge recorded it; other stages show the overall number only)."""
    per_class = judge.get("val_acc_per_class") or {}
    weakest = sorted((acc, name) for name, acc in per_class.items() if acc is not None)[:_WEAK]
    weak = f"; weakest digits {', '.join(f'{name} {acc:.3f}' for acc, name in weakest)}" if weakest else ""
    trained = (f"its best epoch, {judge['best_epoch']} of {judge['epochs']} run; cap {judge['epoch_cap']}, "
               f"patience {judge['patience']}" if "epoch_cap" in judge else f"{judge['epochs']} epochs")
    sentence = (f"cond_acc counts the samples the judge reads as the requested digit; the judge reads the val "
                f"split's digits at {judge['val_acc']:.3f} ({trained}{weak}), so a cond_acc near it is limited by the "
                "judge, not by the generator.")
    rows = {"all": {"judge (val digits)": judge["val_acc"],
                    **{stage: pred["metrics"]["cond_acc"] for stage, pred in predictions.items()}}}
    for name, acc in per_class.items():
        rows[name] = {"judge (val digits)": acc,
                      **{stage: pred.get("cond_acc_per_class", {}).get(name) for stage, pred in predictions.items()}}
    table = pd.DataFrame.from_dict(rows, orient="index").rename_axis("digit").reset_index()
    for col in table.columns[1:]:
        table[col] = table[col].map(lambda v: "–" if v is None or pd.isna(v) else f"{v:.3f}")
    return sentence, table.to_markdown(index=False, disable_numparse=True)


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
