"""The run report: one row per stage with cost, accuracy and ratios against the baseline, plus plots.

    write_summary(["results/metrics/baseline.json", ...], "results/summary.csv", "results/summary.md")
    plot_gamma({"baseline": "results/baseline.pt", "sparse": "results/sparse.pt"}, "results/plots/bn_gamma.png")
"""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and cluster nodes
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from .checkpoint import load_checkpoint  # noqa: E402
from .io import atomic_path, read_json, write_text  # noqa: E402

__all__ = ["summary_table", "write_summary", "bn_gammas", "plot_gamma"]


def summary_table(metrics_paths: list[str | os.PathLike], baseline: str = "baseline") -> pd.DataFrame:
    rows = []
    for path in metrics_paths:
        m = read_json(path)
        rows.append({"stage": m["stage"], **m["metrics"], "fitness": m["fitness"], "params": m["params"],
                     "flops": m["flops"], "file_bytes": m["file_bytes"]})
    table = pd.DataFrame(rows).set_index("stage")
    if baseline in table.index:
        for col in ("params", "flops", "file_bytes"):
            table[f"{col}_vs_baseline"] = table[col] / table.loc[baseline, col]
    return table.reset_index()


def write_summary(metrics_paths: list[str | os.PathLike], out_csv: str | os.PathLike,
                  out_md: str | os.PathLike) -> pd.DataFrame:
    table = summary_table(metrics_paths)
    with atomic_path(out_csv) as tmp:
        table.to_csv(tmp, index=False)
    shown = table.copy()
    for col in ("params", "flops", "file_bytes"):
        shown[col] = shown[col].map(lambda v: f"{v / 1e6:.2f} M" if col != "file_bytes" else f"{v / 2**20:.2f} MiB")
    write_text(out_md, "# slimflow summary\n\n" + shown.to_markdown(index=False, floatfmt=".3f") + "\n")
    return table


def bn_gammas(checkpoint: str | os.PathLike) -> torch.Tensor:
    """|γ| of every BatchNorm channel in a checkpoint (a BN is a prefix with a running_var)."""
    state = load_checkpoint(checkpoint)["state_dict"]
    prefixes = [k[: -len("running_var")] for k in state if k.endswith("running_var")]
    return torch.cat([state[p + "weight"].abs().flatten() for p in prefixes if p + "weight" in state])


def plot_gamma(checkpoints: dict[str, str | os.PathLike], out_png: str | os.PathLike) -> None:
    """Histograms of |γ| per stage on a log axis: sparsity training should pile scales near zero."""
    fig, ax = plt.subplots(figsize=(7, 4))
    bins = torch.linspace(-6, 1, 71).numpy()  # shared edges so the stages compare bin by bin
    for name, path in checkpoints.items():
        gamma = bn_gammas(path).clamp(1e-6, 10).log10().numpy()
        ax.hist(gamma, bins=bins, alpha=0.55, label=f"{name} ({(gamma < -2).mean():.0%} below 1e-2)")
    ax.set(xlabel="log10 |γ| of BatchNorm scales", ylabel="channels", title="BN scale factors")
    ax.legend()
    fig.tight_layout()
    Path(out_png).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
